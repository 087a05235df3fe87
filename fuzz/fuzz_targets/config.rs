//! `config.rs`: the TOML configuration loader.
//!
//! Input: the file's text. Checks:
//! - a configuration that parses is valid (`validate()` finds nothing),
//!   prints (`check-config`), and the printed TOML parses back to the same
//!   configuration (parse → serialise → parse);
//! - a refused one names at least one problem, none of them empty;
//! - `Config::load` of the same text as a file agrees with `parse`.
#![no_main]

use isync::config::Config;
use isync_fuzz::scratch_file;
use libfuzzer_sys::fuzz_target;

fuzz_target!(
    init: {
        // `load` lets this variable override `data_dir`; parse doesn't.
        std::env::remove_var(isync::config::DATA_DIR_ENV);
    },
    |data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = Config::parse(text);
    let path = scratch_file(data, "toml");
    let loaded = Config::load(Some(&path));
    match parsed {
        Ok(cfg) => {
            assert!(cfg.validate().is_empty());
            let printed = cfg.to_toml();
            assert!(!printed.starts_with("# cannot print"), "{printed}");
            match Config::parse(&printed) {
                Ok(again) => assert_eq!(again, cfg, "after printing as:\n{printed}"),
                Err(p) => panic!("printed config refused: {p:?}\n{printed}"),
            }
            let loaded = loaded.expect("load accepts what parse accepts");
            assert_eq!(loaded.file.as_deref(), Some(path.as_path()));
            assert_eq!(Config { file: None, ..loaded }, cfg);
        }
        Err(problems) => {
            assert!(!problems.is_empty() && problems.iter().all(|p| !p.is_empty()));
            assert!(loaded.is_err(), "load accepts what parse refuses");
        }
    }
});
