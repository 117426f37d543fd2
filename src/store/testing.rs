//! Test messages for the store's unit tests: one PAS message from RAL with
//! encounters, as the index writer receives it.

use std::sync::Arc;

use crate::record::{Fields, Identity, Item, Kind, Mapped, Provenance, Version};

/// Message `seq` (control id `C{seq}`, ADT^A08 from PAS at RAL) filing one
/// encounter per `(visit, ward)` under `identity`.
pub(crate) fn encounters(seq: u64, identity: Identity, visits: &[(&str, &str)]) -> Mapped {
    let provenance = Arc::new(Provenance {
        sending_app: "PAS".into(),
        sending_facility: "RAL".into(),
        control_id: format!("C{seq}"),
        message_type: "ADT^A08".into(),
        event_time: None,
        seq,
    });
    let items = visits
        .iter()
        .map(|(visit, ward)| Item {
            kind: Kind::Encounter,
            id: (*visit).into(),
            fields: [("ward", serde_json::json!(ward))].into_iter().collect::<Fields>(),
            provenance: provenance.clone(),
            version: Version::default(),
            scopes: Vec::new(),
        })
        .collect();
    Mapped { identity, items, warnings: vec![], seq_refs: vec![], ignored: false, governed: Default::default() }
}
