//! NHS numbers: the key of the shared care record.
//!
//! [`NhsNumber::parse`] accepts the 10 digits with or without spaces and dashes
//! (`943 476 5919`) and checks the Modulus 11 check digit (NHS Data Dictionary, see
//! `research/domain.md` §1). It does not decide whether a number may be indexed
//! (trace status PID-32, test ranges on production feeds): that is policy, elsewhere.

use std::fmt;

/// Why a string is not an NHS number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NhsError {
    /// Not 10 digits once spaces and dashes are removed.
    #[error("an NHS number has 10 digits, found {0}")]
    WrongLength(usize),
    /// A character other than a digit, space or dash.
    #[error("an NHS number has only digits (spaces and dashes are ignored)")]
    NotDigits,
    /// Check digit 10 would be needed: no NHS number has these first 9 digits.
    #[error("no NHS number has these first 9 digits (Modulus 11 check digit would be 10)")]
    NoCheckDigit,
    /// The 10th digit is not the Modulus 11 check digit of the first 9.
    #[error("check digit does not match (Modulus 11): mistyped number?")]
    BadCheckDigit,
    /// All ten digits the same (`0000000000`, `9999999999`): a placeholder, not a number.
    #[error("all-same-digit placeholder, not a real NHS number")]
    Placeholder,
}

/// A checksum-valid NHS number: 10 ASCII digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NhsNumber([u8; 10]);

impl NhsNumber {
    /// Parses and checks an NHS number, ignoring spaces and dashes.
    ///
    /// # Errors
    /// [`NhsError`] says which check failed.
    pub fn parse(s: &str) -> Result<NhsNumber, NhsError> {
        let mut digits = [0u8; 10];
        let mut n = 0;
        for b in s.bytes().filter(|&b| b != b' ' && b != b'-') {
            if !b.is_ascii_digit() {
                return Err(NhsError::NotDigits);
            }
            if n < 10 {
                digits[n] = b;
            }
            n += 1;
        }
        if n != 10 {
            return Err(NhsError::WrongLength(n));
        }
        if digits.iter().all(|&d| d == digits[0]) {
            return Err(NhsError::Placeholder);
        }
        let sum: u32 = digits[..9].iter().zip((2..=10).rev()).map(|(&d, w)| u32::from(d - b'0') * w).sum();
        let check = match 11 - sum % 11 {
            11 => 0,
            10 => return Err(NhsError::NoCheckDigit),
            c => c,
        };
        if u32::from(digits[9] - b'0') != check {
            return Err(NhsError::BadCheckDigit);
        }
        Ok(NhsNumber(digits))
    }

    /// The 10 digits, without spaces.
    pub fn as_str(&self) -> &str {
        // parse only stores ASCII digits.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    /// True for the `999 000 0000–999 999 9999` test range.
    pub fn is_test_number(&self) -> bool {
        self.0.starts_with(b"999")
    }
}

impl fmt::Display for NhsNumber {
    /// Shown 3-3-4, as on NHS documents.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.as_str();
        write!(f, "{} {} {}", &s[..3], &s[3..6], &s[6..])
    }
}

impl fmt::Debug for NhsNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NhsNumber({})", self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_numbers() {
        for s in ["9434765919", "9449305552", "9990000018", "9990000050"] {
            assert_eq!(NhsNumber::parse(s).map(|n| n.as_str().to_string()), Ok(s.to_string()));
        }
        assert!(NhsNumber::parse("9990000018").unwrap().is_test_number());
        assert!(!NhsNumber::parse("9434765919").unwrap().is_test_number());
    }

    #[test]
    fn spaces_and_dashes_normalise() {
        assert_eq!(NhsNumber::parse("943 476 5919").unwrap().as_str(), "9434765919");
        assert_eq!(NhsNumber::parse("943-476-5919").unwrap().as_str(), "9434765919");
        assert_eq!(NhsNumber::parse("9434765919").unwrap().to_string(), "943 476 5919");
    }

    #[test]
    fn check_digit_ten_is_invalid_for_every_last_digit() {
        for x in 0..=9 {
            assert_eq!(NhsNumber::parse(&format!("999000000{x}")), Err(NhsError::NoCheckDigit));
        }
    }

    #[test]
    fn rejects() {
        assert_eq!(NhsNumber::parse("9434765918"), Err(NhsError::BadCheckDigit));
        assert_eq!(NhsNumber::parse("0000000000"), Err(NhsError::Placeholder));
        assert_eq!(NhsNumber::parse("1111111111"), Err(NhsError::Placeholder));
        assert_eq!(NhsNumber::parse("9999999999"), Err(NhsError::Placeholder));
        assert_eq!(NhsNumber::parse("943476591"), Err(NhsError::WrongLength(9)));
        assert_eq!(NhsNumber::parse("94347659190"), Err(NhsError::WrongLength(11)));
        assert_eq!(NhsNumber::parse(""), Err(NhsError::WrongLength(0)));
        assert_eq!(NhsNumber::parse("943476591X"), Err(NhsError::NotDigits));
        assert_eq!(NhsNumber::parse("９434765919"), Err(NhsError::NotDigits));
    }
}
