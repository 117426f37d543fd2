use serde_json::json;

use super::*;

#[test]
fn fields_keep_mapping_order_through_json() {
    let mut f: Fields = [("zeta", json!(1)), ("alpha", json!("a"))].into_iter().collect();
    f.insert("zeta", json!(2));
    let json = serde_json::to_string(&f).unwrap();
    assert_eq!(json, r#"{"zeta":2,"alpha":"a"}"#);
    let back: Fields = serde_json::from_str(&json).unwrap();
    assert_eq!(back, f);
    assert_eq!(back.get("alpha"), Some(FieldRef::Str("a")));
    assert_eq!(back.len(), 2);
}

#[test]
fn every_kind_of_value_round_trips_and_long_names_fit() {
    let long = "n".repeat(300);
    let text = "é".repeat(200);
    let f: Fields = [
        ("s", json!("x")),
        ("null", Json::Null),
        ("n", json!(-3.5)),
        ("rows", json!([{"a": "b"}])),
        (long.as_str(), json!(text)),
    ]
    .into_iter()
    .collect();
    let back: Fields = rmp_serde::from_slice(&rmp_serde::to_vec_named(&f).unwrap()).unwrap();
    assert_eq!(back, f);
    assert_eq!(f.get(&long), Some(FieldRef::Str(&text)));
    assert_eq!(f.get("null"), Some(FieldRef::Null));
    assert_eq!(f.to_json(), serde_json::to_value(&f).unwrap());
    let mut g = f.clone();
    g.get_json_mut("rows").unwrap()[0]["a"] = json!("c");
    assert_eq!(g.get("rows").unwrap().to_json(), json!([{"a": "c"}]));
}

#[test]
fn fields_built_from_a_plans_names_equal_the_same_values_read_back() {
    let names: Names = ["unused", "code", "rows"].into_iter().map(Arc::from).collect();
    let mut b = Fields::builder(&names);
    b.push_str_at(1, "I10");
    b.push_at(2, json!([{"a": 1}]));
    let f = b.finish();
    let back: Fields = serde_json::from_str(&serde_json::to_string(&f).unwrap()).unwrap();
    assert_eq!(back, f);
    assert_eq!(serde_json::to_string(&f).unwrap(), r#"{"code":"I10","rows":[{"a":1}]}"#);
    let mut g = f.clone();
    g.insert("code", json!("I11"));
    g.insert("new", Json::Null);
    assert_eq!(serde_json::to_string(&g).unwrap(), r#"{"code":"I11","rows":[{"a":1}],"new":null}"#);
}

fn rows(values: &[(&str, &str)]) -> Vec<Fields> {
    let names: Names = ["value", "code"].into_iter().map(Arc::from).collect();
    values
        .iter()
        .map(|(code, value)| {
            let mut row = Fields::builder(&names);
            row.push_str_at(1, code);
            if !value.is_empty() {
                row.push_str_at(0, value);
            }
            row.finish()
        })
        .collect()
}

#[test]
fn packed_rows_read_write_and_compare_as_the_json_they_stand_for() {
    let names: Names = ["test", "observations"].into_iter().map(Arc::from).collect();
    let mut b = Fields::builder(&names);
    b.push_str_at(0, "FBC");
    b.push_rows_at(1, rows(&[("HB", "135"), ("WBC", "")]));
    let f = b.finish();
    let expected = json!({"test": "FBC", "observations": [{"code": "HB", "value": "135"}, {"code": "WBC"}]});
    assert_eq!(f.to_json(), expected);
    // Each row keeps its mapping order, as the item's own values do.
    assert_eq!(
        serde_json::to_string(&f).unwrap(),
        r#"{"test":"FBC","observations":[{"code":"HB","value":"135"},{"code":"WBC"}]}"#
    );
    // Read back from the index the rows are JSON: still the same fields.
    let back: Fields = rmp_serde::from_slice(&rmp_serde::to_vec_named(&f).unwrap()).unwrap();
    assert!(matches!(back.get("observations"), Some(FieldRef::Json(_))));
    assert_eq!(back, f);
    assert_eq!(back.to_json(), expected);
    let mut other = f.clone();
    other.set_in_row("observations", 1, "value", json!("7.1"));
    assert_ne!(other, f, "a changed row is a different value");
    assert_eq!(other.get("observations").unwrap().to_json()[1], json!({"code": "WBC", "value": "7.1"}));
}

#[test]
fn a_value_in_a_row_is_set_whether_the_rows_are_packed_or_json() {
    let names: Names = ["observations"].into_iter().map(Arc::from).collect();
    let mut b = Fields::builder(&names);
    b.push_rows_at(0, rows(&[("HB", "135")]));
    let mut packed = b.finish();
    let mut json: Fields = [("observations", json!([{"code": "HB", "value": "135"}]))].into_iter().collect();
    for f in [&mut packed, &mut json] {
        f.set_in_row("observations", 0, "ref", json!("journal:42"));
        f.set_in_row("observations", 5, "ref", json!("no such row"));
        f.set_in_row("none", 0, "ref", json!("no such list"));
    }
    let expected = json!({"observations": [{"code": "HB", "value": "135", "ref": "journal:42"}]});
    assert_eq!(packed.to_json(), expected);
    assert_eq!(json.to_json(), expected);
}

#[test]
fn rows_inserted_over_a_value_of_the_same_name_replace_it_in_place() {
    let names: Names = ["a", "observations", "z"].into_iter().map(Arc::from).collect();
    let mut b = Fields::builder(&names);
    b.push_str_at(0, "x");
    b.push_str_at(1, "a field named like the list");
    b.push_at(2, json!(3));
    b.insert_rows("observations", rows(&[("K", "4.1")]));
    let f = b.finish();
    assert_eq!(serde_json::to_string(&f).unwrap(), r#"{"a":"x","observations":[{"code":"K","value":"4.1"}],"z":3}"#);
}
