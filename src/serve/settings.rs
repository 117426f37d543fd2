//! From the validated config to what the engine's parts take: the mapping
//! set (with its exclusion rules), the pipeline options, the MLLP server
//! settings. Pure translation; nothing is opened or bound here.

use crate::config::Config;
use crate::fault::Faults;
use crate::health::Health;
use crate::intake::Policy;
use crate::mapping::MappingSet;
use crate::mllp::server::ServerConfig;
use crate::pipeline::{Mappings, Options};

use super::ServeError;

/// Loads every mapping file, or says what is wrong with each (file:line:col).
///
/// # Errors
/// Any mapping or table file is broken.
pub fn load_mappings(cfg: &Config) -> Result<Mappings, ServeError> {
    let set = MappingSet::load_dir(&cfg.mapping.dir)
        .map_err(|e| ServeError::Mappings { dir: cfg.mapping.dir.clone(), errors: e.to_string() })?;
    // The exclusion rules live beside the mappings and load with them.
    let gdir = cfg.mapping.dir.join(crate::govern::DIR);
    let rules =
        crate::govern::Rules::load_dir(&gdir).map_err(|e| ServeError::Mappings { dir: gdir, errors: e.to_string() })?;
    Ok(Mappings::with_rules(set, rules))
}

/// The pipeline options a config describes.
pub fn pipeline_options(cfg: &Config, mappings: Mappings) -> Options {
    let mut parse = crate::hl7::ParseOptions::default();
    if let Some(cs) = crate::hl7::Charset::from_config_name(&cfg.hl7.fallback_charset) {
        parse.fallback_charset = cs;
    }
    Options {
        data_dir: cfg.store.data_dir.clone(),
        journal_segment_bytes: cfg.store.journal_segment_bytes,
        index_cache_bytes: cfg.store.index_cache_bytes,
        journal_damage: match cfg.store.on_journal_damage {
            crate::config::JournalDamage::Refuse => crate::journal::DamagePolicy::Refuse,
            crate::config::JournalDamage::Quarantine => crate::journal::DamagePolicy::Quarantine,
        },
        application: cfg.ack.application.clone(),
        facility: cfg.ack.facility.clone(),
        policy: Policy {
            processing_ids: cfg.ack.processing_ids.clone(),
            parse,
            unknown_charset: cfg.hl7.unknown_charset,
        },
        mappings,
        health: Health::default(),
        faults: Faults::none(),
    }
}

/// The MLLP server settings of `[mllp]` (the main listener).
pub fn server_config(cfg: &Config) -> ServerConfig {
    ServerConfig {
        max_frame_bytes: cfg.mllp.max_frame_bytes,
        idle_timeout: cfg.mllp.idle_timeout,
        frame_timeout: cfg.mllp.frame_timeout,
        max_connections: cfg.mllp.max_connections,
        max_connections_per_peer: cfg.mllp.max_connections_per_peer,
        max_in_flight: cfg.mllp.max_in_flight,
        stats: Default::default(),
        security: Default::default(),
    }
}
