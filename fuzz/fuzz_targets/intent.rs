//! Fuzz target `intent`: arbitrary bytes through the public intent loader (YAML front end,
//! decoder, validator) and the snapshot loader.
//!
//! Oracle, beyond "no panic, no hang, bounded memory" (libFuzzer's -timeout/-rss_limit_mb):
//! - a refused input yields at least one diagnostic, each naming the file;
//! - an accepted input round-trips: its canonical JSON loads back as a snapshot into an equal
//!   intent with the same digest (what the steps rely on when they re-read a run's snapshot).
#![no_main]

use libfuzzer_sys::fuzz_target;
use netstep::intent::{self, Intent, Slice};

fuzz_target!(|data: &[u8]| {
    match intent::load_str("fuzz.yaml", data) {
        Ok(it) => {
            let json = it.canonical_json();
            let back = match Intent::from_snapshot_json("snapshot.json", json.as_bytes()) {
                Ok(b) => b,
                Err(e) => panic!("an accepted intent's canonical JSON is refused:\n{e}\n{json}"),
            };
            assert!(back == it, "snapshot round trip changed the intent");
            assert_eq!(back.digest(), it.digest());
            // The resolved views the steps use must not panic either.
            let _ = (
                it.vnets().len(),
                it.groups().len(),
                it.connectivity_configs().len(),
            );
            let _ = (it.firewall_policies().len(), it.dns_links().len());
            for s in Slice::ALL {
                let _ = it.slice_digest(s);
            }
        }
        Err(e) => {
            assert!(!e.diagnostics().is_empty(), "an error without diagnostics");
            for d in e.diagnostics() {
                assert_eq!(d.file, "fuzz.yaml", "{d}");
            }
            let _ = e.to_string();
        }
    }
    // The snapshot loader reads bytes from the state store: it must be as robust.
    if let Err(e) = Intent::from_snapshot_json("snapshot.json", data) {
        assert!(!e.diagnostics().is_empty());
    }
});
