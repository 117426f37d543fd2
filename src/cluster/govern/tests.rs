//! Tests of the governance consumer and the audit forwarder.
