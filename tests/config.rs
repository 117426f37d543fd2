//! Config loading end to end: the shipped `engine.toml`, the bad files pinned in
//! `fixtures/config/`, and the precedence defaults < file < environment < command line.
//!
//! The environment and the working directory are process-wide and tests run in
//! parallel threads, so every test that loads a config holds `LOCK`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use recordhub::config::{self, Config, ConfigError, JournalDamage, LogFormat, Overrides, RawConfig, UnknownCharset};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

static LOCK: Mutex<()> = Mutex::new(());

fn lock() -> MutexGuard<'static, ()> {
    // A failed test poisons the lock; the environment is restored by `EnvGuard` anyway.
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn path(relative: &str) -> PathBuf {
    Path::new(ROOT).join(relative)
}

fn fixture(name: &str) -> PathBuf {
    path(&format!("fixtures/config/{name}"))
}

fn load(file: &Path) -> Result<Config, ConfigError> {
    config::load(Some(file), &Overrides::default())
}

/// The error text for a file that must fail to load.
fn load_err(file: &Path) -> String {
    match load(file) {
        Ok(config) => panic!("{} loaded but should fail: {config:?}", file.display()),
        Err(e) => e.to_string(),
    }
}

/// Sets environment variables and removes them on drop, also when the test panics.
struct EnvGuard(Vec<&'static str>);

impl EnvGuard {
    fn set(&mut self, name: &'static str, value: &str) {
        std::env::set_var(name, value);
        self.0.push(name);
    }
}

impl Drop for EnvGuard {
    fn drop(&mut self) {
        for name in &self.0 {
            std::env::remove_var(name);
        }
    }
}

#[test]
fn shipped_engine_toml_loads_and_equals_defaults() {
    let _lock = lock();
    let loaded = load(&path("engine.toml")).expect("shipped engine.toml loads");
    let mut expected = Config::default();
    // Its relative paths are relative to the file's directory (hole 15).
    expected.store.data_dir = path("data");
    expected.mapping.dir = path("mappings");
    assert_eq!(loaded, expected);
}

#[test]
fn shipped_engine_toml_lists_every_key_with_its_default() {
    // Guards against a key added to RawConfig but not documented in engine.toml.
    let text = std::fs::read_to_string(path("engine.toml")).unwrap();
    let shipped: toml::Table = toml::from_str(&text).unwrap();
    let defaults = toml::Table::try_from(RawConfig::default()).unwrap();
    assert_eq!(shipped, defaults);
}

#[test]
fn defaults_have_the_documented_types_and_values() {
    let config = Config::default();
    assert_eq!(config.mllp.listen, "127.0.0.1:2575".parse::<SocketAddr>().unwrap());
    assert_eq!(config.mllp.max_frame_bytes, 16_777_216);
    assert_eq!(config.mllp.idle_timeout, Duration::from_secs(300));
    assert_eq!(config.mllp.frame_timeout, Duration::from_secs(30));
    assert_eq!(config.mllp.ack_timeout, Duration::from_secs(30));
    assert_eq!(config.store.data_dir, PathBuf::from("./data"));
    assert_eq!(config.ack.processing_ids, ["P", "D", "T"]);
    assert_eq!(config.hl7.fallback_charset, "windows-1252");
    assert_eq!(config.log.format, LogFormat::Json);
    assert_eq!(config.log.buffer_lines, 16_384);
    assert_eq!(config.mllp.max_connections_per_peer, 64);
    assert_eq!(config.store.on_journal_damage, JournalDamage::Refuse);
    assert_eq!(config.hl7.unknown_charset, UnknownCharset::Reject);
    assert!(config.http.metrics, "metrics are on unless turned off");
}

#[test]
fn http_metrics_can_be_turned_off_and_a_non_boolean_names_the_key() {
    let _lock = lock();
    let (_dir, file) = temp_config("[http]\nmetrics = false\n");
    assert!(!load(&file).unwrap().http.metrics);
    let (_dir, file) = temp_config("[http]\nmetrics = \"yes\"\n");
    let err = load(&file).unwrap_err().to_string();
    assert!(err.contains("engine.toml:2:") && err.contains("metrics"), "{err}");
}

#[test]
fn no_path_and_no_engine_toml_means_defaults() {
    let _lock = lock();
    let dir = tempfile::tempdir().unwrap();
    let before = std::env::current_dir().unwrap();
    std::env::set_current_dir(dir.path()).unwrap();
    let loaded = config::load(None, &Overrides::default());
    std::env::set_current_dir(before).unwrap();
    assert_eq!(loaded.unwrap(), Config::default());
}

#[test]
fn no_path_reads_engine_toml_in_the_working_directory() {
    let _lock = lock();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("engine.toml"), "[store]\nmax_batch = 7\n").unwrap();
    let before = std::env::current_dir().unwrap();
    std::env::set_current_dir(dir.path()).unwrap();
    let loaded = config::load(None, &Overrides::default());
    std::env::set_current_dir(before).unwrap();
    assert_eq!(loaded.unwrap().store.max_batch, 7);
}

#[test]
fn misspelt_key_names_file_position_key_and_valid_keys() {
    let _lock = lock();
    let file = fixture("misspelt-key.toml");
    assert_eq!(
        load_err(&file),
        format!(
            "{}:3:1: mllp.max_frame_byte: unknown field `max_frame_byte`, expected one of \
             `listen`, `max_frame_bytes`, `idle_timeout_secs`, `frame_timeout_secs`, \
             `max_connections`, `max_connections_per_peer`, `max_in_flight`, `ack_timeout_secs`, `listeners`",
            file.display()
        )
    );
}

#[test]
fn wrong_type_names_file_position_and_key() {
    let _lock = lock();
    let file = fixture("wrong-type.toml");
    assert_eq!(
        load_err(&file),
        format!("{}:3:13: store.max_batch: invalid type: string \"64\", expected u64", file.display())
    );
}

#[test]
fn toml_syntax_error_has_a_position() {
    let _lock = lock();
    let file = fixture("syntax-error.toml");
    let message = load_err(&file);
    assert!(message.starts_with(&format!("{}:2:", file.display())), "{message}");
}

#[test]
fn bad_address_names_file_position_key_and_value() {
    let _lock = lock();
    let file = fixture("bad-address.toml");
    assert_eq!(
        load_err(&file),
        format!(
            "invalid configuration:\n\
             {}:2:1: mllp.listen = \"localhost:abc\": not an IP socket address like 127.0.0.1:2575",
            file.display()
        )
    );
}

#[test]
fn several_problems_are_reported_at_once() {
    let _lock = lock();
    let file = fixture("several-errors.toml");
    let f = file.display();
    assert_eq!(
        load_err(&file),
        format!(
            "invalid configuration:\n\
             {f}:2:1: mllp.listen = \"localhost:abc\": not an IP socket address like 127.0.0.1:2575\n\
             {f}:3:1: mllp.max_in_flight = 0: must be a positive number\n\
             {f}:6:1: store.max_batch = 0: must be a positive number\n\
             {f}:9:1: hl7.fallback_charset = \"latin-9\": unknown charset; expected one of ascii, utf-8, iso-8859-1, windows-1252\n\
             {f}:12:1: log.format = \"xml\": unknown log format; expected json or pretty"
        )
    );
}

#[test]
fn explicit_missing_file_is_an_error_naming_it() {
    let _lock = lock();
    let file = fixture("does-not-exist.toml");
    let err = load(&file).unwrap_err();
    assert!(matches!(err, ConfigError::NotFound { .. }), "{err:?}");
    assert!(err.to_string().contains("fixtures/config/does-not-exist.toml"), "{err}");
}

#[test]
fn charset_is_case_insensitive_and_stored_lower_case() {
    let _lock = lock();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("engine.toml");
    std::fs::write(&file, "[hl7]\nfallback_charset = \"ISO-8859-1\"\n").unwrap();
    assert_eq!(load(&file).unwrap().hl7.fallback_charset, "iso-8859-1");
}

/// All environment cases in one test: the variables are process-wide.
#[test]
fn precedence_defaults_file_environment_command_line() {
    let _lock = lock();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("engine.toml");
    std::fs::write(&file, "[mllp]\nlisten = \"127.0.0.1:2000\"\nmax_in_flight = 8\n[store]\nmax_batch = 100\n")
        .unwrap();
    let mut env = EnvGuard(Vec::new());

    // File over defaults.
    let loaded = load(&file).unwrap();
    assert_eq!(loaded.mllp.listen, "127.0.0.1:2000".parse::<SocketAddr>().unwrap());
    assert_eq!(loaded.store.max_batch, 100);
    assert_eq!(loaded.mllp.max_connections, 1024);

    // Environment over file; lists split on ','.
    env.set("RECORDHUB__MLLP__LISTEN", "127.0.0.1:3000");
    env.set("RECORDHUB__STORE__MAX_BATCH", "64");
    env.set("RECORDHUB__ACK__PROCESSING_IDS", "P,T");
    env.set("RECORDHUB__LOG__FORMAT", "pretty");
    let loaded = load(&file).unwrap();
    assert_eq!(loaded.mllp.listen, "127.0.0.1:3000".parse::<SocketAddr>().unwrap());
    assert_eq!(loaded.store.max_batch, 64);
    assert_eq!(loaded.mllp.max_in_flight, 8, "file value kept where env is silent");
    assert_eq!(loaded.ack.processing_ids, ["P", "T"]);
    assert_eq!(loaded.log.format, LogFormat::Pretty);

    // Command line over environment.
    let overrides = Overrides {
        listen: Some("127.0.0.1:4000".parse().unwrap()),
        data_dir: Some(PathBuf::from("/srv/recordhub")),
        http_listen: Some("127.0.0.1:9000".parse().unwrap()),
    };
    let loaded = config::load(Some(&file), &overrides).unwrap();
    assert_eq!(loaded.mllp.listen, "127.0.0.1:4000".parse::<SocketAddr>().unwrap());
    assert_eq!(loaded.http.listen, "127.0.0.1:9000".parse::<SocketAddr>().unwrap());
    assert_eq!(loaded.store.data_dir, PathBuf::from("/srv/recordhub"));
    assert_eq!(loaded.store.max_batch, 64);

    // A bad value from the environment names the variable, not the file.
    env.set("RECORDHUB__MLLP__LISTEN", "localhost:abc");
    assert_eq!(
        load(&file).unwrap_err().to_string(),
        "invalid configuration:\nenvironment variable RECORDHUB__MLLP__LISTEN: \
         mllp.listen = \"localhost:abc\": not an IP socket address like 127.0.0.1:2575"
    );
    env.set("RECORDHUB__MLLP__LISTEN", "127.0.0.1:3000");

    // A wrong type from the environment names the variable.
    env.set("RECORDHUB__STORE__MAX_BATCH", "lots");
    let message = load(&file).unwrap_err().to_string();
    assert!(message.starts_with("environment variable RECORDHUB__STORE__MAX_BATCH: "), "{message}");
    env.set("RECORDHUB__STORE__MAX_BATCH", "64");

    // A misspelt variable is an unknown key, not silently ignored.
    env.set("RECORDHUB__MLLP__LISTN", "127.0.0.1:3000");
    assert_eq!(
        load(&file).unwrap_err().to_string(),
        "environment variable RECORDHUB__MLLP__LISTN: unknown field `listn`, expected one of \
         `listen`, `max_frame_bytes`, `idle_timeout_secs`, `frame_timeout_secs`, \
         `max_connections`, `max_connections_per_peer`, `max_in_flight`, `ack_timeout_secs`, `listeners`"
    );
}

/// Writes `text` as `engine.toml` in a fresh temporary directory.
fn temp_config(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("engine.toml");
    std::fs::write(&file, text).unwrap();
    (dir, file)
}

#[test]
fn new_keys_load_typed() {
    let _lock = lock();
    let (_dir, file) = temp_config(
        "[mllp]\nmax_connections = 100\nmax_connections_per_peer = 8\n\
         [store]\non_journal_damage = \"quarantine\"\n\
         [hl7]\nunknown_charset = \"fallback\"\n\
         [log]\nbuffer_lines = 100\n",
    );
    let loaded = load(&file).unwrap();
    assert_eq!(loaded.mllp.max_connections_per_peer, 8);
    assert_eq!(loaded.store.on_journal_damage, JournalDamage::Quarantine);
    assert_eq!(loaded.hl7.unknown_charset, UnknownCharset::Fallback);
    assert_eq!(loaded.log.buffer_lines, 100);
}

#[test]
fn new_keys_bad_values_name_file_position_key_and_choices() {
    let _lock = lock();
    let (_dir, file) = temp_config(
        "[mllp]\nmax_connections = 10\nmax_connections_per_peer = 11\n\
         [store]\non_journal_damage = \"ignore\"\n\
         [hl7]\nunknown_charset = \"guess\"\n\
         [log]\nbuffer_lines = 0\n",
    );
    let f = file.display();
    assert_eq!(
        load_err(&file),
        format!(
            "invalid configuration:\n\
             {f}:3:1: mllp.max_connections_per_peer = 11: must be at most mllp.max_connections (10)\n\
             {f}:5:1: store.on_journal_damage = \"ignore\": expected one of \"refuse\", \"quarantine\"\n\
             {f}:7:1: hl7.unknown_charset = \"guess\": expected one of \"reject\", \"fallback\"\n\
             {f}:9:1: log.buffer_lines = 0: must be a positive number"
        )
    );
    let (_dir, file) = temp_config("[mllp]\nmax_connections_per_peer = 0\n");
    assert_eq!(
        load_err(&file),
        format!(
            "invalid configuration:\n{}:2:1: mllp.max_connections_per_peer = 0: must be a positive number",
            file.display()
        )
    );
    let (_dir, file) = temp_config("[log]\nbuffer_lines = 2000000\n");
    assert_eq!(
        load_err(&file),
        format!("invalid configuration:\n{}:2:1: log.buffer_lines = 2000000: must be at most 1048576", file.display())
    );
}

/// Hole 15: `cd / && recordhub serve --config /etc/recordhub/engine.toml` read
/// `./mappings` and `./data` from the working directory, not beside the file.
#[test]
fn hole_15_relative_paths_in_the_file_resolve_against_its_directory() {
    let _lock = lock();
    let (dir, file) = temp_config("[store]\ndata_dir = \"./spool/data\"\n[mapping]\ndir = \"maps\"\n");
    let loaded = load(&file).unwrap();
    assert_eq!(loaded.store.data_dir, dir.path().join("spool/data"));
    assert_eq!(loaded.mapping.dir, dir.path().join("maps"));

    // Keys the file leaves out: their defaults live beside the file too.
    let (dir, file) = temp_config("[store]\nmax_batch = 7\n");
    let loaded = load(&file).unwrap();
    assert_eq!(loaded.store.data_dir, dir.path().join("data"));
    assert_eq!(loaded.mapping.dir, dir.path().join("mappings"));

    // Absolute paths are kept.
    let (_dir, file) = temp_config("[store]\ndata_dir = \"/srv/recordhub\"\n");
    assert_eq!(load(&file).unwrap().store.data_dir, PathBuf::from("/srv/recordhub"));
}

#[test]
fn hole_15_command_line_and_environment_paths_stay_relative_to_the_working_directory() {
    let _lock = lock();
    let (_dir, file) = temp_config("[store]\ndata_dir = \"data\"\n[mapping]\ndir = \"maps\"\n");
    let mut env = EnvGuard(Vec::new());
    env.set("RECORDHUB__MAPPING__DIR", "env-maps");
    let overrides = Overrides { data_dir: Some(PathBuf::from("cli-data")), ..Overrides::default() };
    let loaded = config::load(Some(&file), &overrides).unwrap();
    assert_eq!(loaded.store.data_dir, PathBuf::from("cli-data"));
    assert_eq!(loaded.mapping.dir, PathBuf::from("env-maps"));
}

#[test]
fn resolve_path_is_relative_to_the_base_only_for_relative_paths() {
    let base = Path::new("/etc/recordhub");
    assert_eq!(config::resolve_path(Path::new("data"), Some(base)), PathBuf::from("/etc/recordhub/data"));
    assert_eq!(config::resolve_path(Path::new("./data"), Some(base)), PathBuf::from("/etc/recordhub/data"));
    assert_eq!(config::resolve_path(Path::new("/var/lib/rh"), Some(base)), PathBuf::from("/var/lib/rh"));
    assert_eq!(config::resolve_path(Path::new("data"), None), PathBuf::from("data"));
}

/// Hole 15 end to end: the real binary, started from an unrelated working
/// directory, opens the data and mappings beside its config file and says so.
#[test]
fn hole_15_serve_from_another_working_directory_uses_the_configs_directory() {
    // The child inherits the environment: no other test's RECORDHUB__* variables.
    let _lock = lock();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (dir, file) = temp_config(&format!(
        "[mllp]\nlisten = \"127.0.0.1:{port}\"\n[http]\nlisten = \"127.0.0.1:0\"\n\
         [store]\ndata_dir = \"data\"\n[mapping]\ndir = \"maps\"\n"
    ));
    std::os::unix::fs::symlink(path("mappings"), dir.path().join("maps")).unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_recordhub"))
        .args(["serve", "--config"])
        .arg(&file)
        .current_dir(elsewhere.path())
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut started = false;
    while std::time::Instant::now() < deadline && child.try_wait().unwrap().is_none() {
        if let Ok(conn) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            // The listener is bound before the journal opens: an ACK says the engine is up.
            started = acknowledges(conn);
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(started, "serve started from another working directory; stderr:\n{stderr}");
    let listing: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(dir.path().join("data/journal").is_dir(), "the journal is beside the config file: {listing:?}\n{stderr}");
    assert!(!elsewhere.path().join("data").exists(), "nothing is created in the working directory");
    let resolved = stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|l| l["message"] == "resolved paths")
        .unwrap_or_else(|| panic!("a 'resolved paths' line at start-up; stderr:\n{stderr}"));
    assert_eq!(resolved["level"], "INFO");
    assert_eq!(resolved["data_dir"], dir.path().join("data").display().to_string());
    assert_eq!(resolved["mapping_dir"], dir.path().join("maps").display().to_string());
}

/// Sends one ADT over MLLP and waits (10 s at most) for its ACK frame.
fn acknowledges(mut conn: std::net::TcpStream) -> bool {
    use std::io::{Read, Write};
    let msg =
        "MSH|^~\\&|PAS|RJ1|RECORDHUB|LCR|20261121083000||ADT^A01^ADT_A01|CFG1|P|2.4\rPID|1||9434765919^^^NHS^NH\r";
    let mut frame = vec![0x0b];
    frame.extend_from_slice(msg.as_bytes());
    frame.extend_from_slice(&[0x1c, 0x0d]);
    conn.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    if conn.write_all(&frame).is_err() {
        return false;
    }
    let mut got = Vec::new();
    let mut chunk = [0u8; 1024];
    while !got.ends_with(&[0x1c, 0x0d]) {
        match conn.read(&mut chunk) {
            Ok(0) | Err(_) => return false,
            Ok(n) => got.extend_from_slice(&chunk[..n]),
        }
    }
    true
}

/// Allow-lists are checked at load: a subject needs mutual TLS, a CIDR must
/// parse, an entry must say who and as what; all reported at once.
#[test]
fn listener_allow_lists_are_validated_at_load_every_problem_named() {
    let _env = lock();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("engine.toml");
    std::fs::write(
        &file,
        "[[mllp.listeners]]\nlisten = \"127.0.0.1:2576\"\n\
         allow = [{ subject = \"CN=pas\", sending_app = \"PAS\" }, { cidr = \"10.0.0.0/40\", sending_app = \"PAS\" },\n\
         { cidr = \"10.0.0.0/8\" }, { sending_app = \"PAS\" }]\n\n\
         [[mllp.listeners]]\nlisten = \"127.0.0.1:2577\"\nallow = [{ cidr = \"10.1.0.0/16\", sending_facility = \"RJ1\" }]\n",
    )
    .unwrap();
    let err = load_err(&file);
    let at = format!("{}:1:", file.display());
    for expected in [
        "mllp.listeners[1].allow[1].subject = \"CN=pas\": a subject can only be checked on a listener with tls.client_ca",
        "mllp.listeners[1].allow[2].cidr = \"10.0.0.0/40\": prefix \"40\" is not a number from 0 to 32",
        "mllp.listeners[1].allow[3] = { ... }: give sending_app, sending_facility or both",
        "mllp.listeners[1].allow[4] = { ... }: give exactly one of subject",
    ] {
        assert!(err.contains(expected), "{expected:?} in {err}");
    }
    assert!(err.lines().skip(1).all(|l| l.starts_with(&at)), "each problem at the listeners' position: {err}");
    assert_eq!(err.lines().count(), 5, "{err}");
}
