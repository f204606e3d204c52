//! The bad-intent corpus (tests/fixtures/bad-intents/, manifest EXPECTED.tsv) through the loader
//! and validator, in process: every fixture is refused, without a panic, with a diagnostic on
//! the manifest's line and YAML path whose message contains the manifest's fragment. Files too
//! big to commit (over the size limit, over the node limit, over the flow-item limit) are
//! generated here. The same corpus runs through the real step binaries in
//! tests/pipeline/tests/bad_intents.rs.

use std::path::{Path, PathBuf};

use netstep::intent::{self, IntentError, MAX_FILE_SIZE, MAX_FLOW_ITEMS, MAX_NODES};

/// The issue asks for at least 60 broken intents; a manifest that lost its rows must not pass.
const MIN_FIXTURES: usize = 60;

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/bad-intents")
}

/// One manifest row.
struct Expected {
    file: String,
    line: u32,
    path: String,
    message: String,
}

fn manifest() -> Vec<Expected> {
    let text = std::fs::read_to_string(corpus_dir().join("EXPECTED.tsv")).expect("EXPECTED.tsv");
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let cols: Vec<&str> = l.split('\t').collect();
            assert_eq!(cols.len(), 4, "EXPECTED.tsv row needs 4 columns: {l:?}");
            Expected {
                file: cols[0].to_string(),
                line: cols[1].parse().expect("line is a number"),
                path: if cols[2] == "-" {
                    String::new()
                } else {
                    cols[2].to_string()
                },
                message: cols[3].to_string(),
            }
        })
        .collect()
}

fn load_err(path: &Path) -> IntentError {
    match std::panic::catch_unwind(|| intent::load_file(path)) {
        Err(_) => panic!("{}: the loader panicked", path.display()),
        Ok(Ok(_)) => panic!("{}: a bad intent was accepted", path.display()),
        Ok(Err(e)) => e,
    }
}

/// Checks `e` holds a diagnostic at `line` with `path` whose message contains `message`, and
/// that its rendering names the file and the line; returns what is wrong.
fn check_diag(
    e: &IntentError,
    file: &str,
    line: u32,
    path: &str,
    message: &str,
) -> Result<(), String> {
    let found = e
        .diagnostics()
        .iter()
        .find(|d| d.line == line && d.path == path && d.message.contains(message));
    let Some(d) = found else {
        return Err(format!(
            "{file}: expected a diagnostic at line {line}, path `{path}`, message containing \
             {message:?}; got:\n{e}"
        ));
    };
    if !d.file.ends_with(file) {
        return Err(format!("{file}: diagnostic names another file: {d}"));
    }
    let rendered = e.to_string();
    let head = if line == 0 {
        format!("{}: ", d.file)
    } else {
        if d.col < 1 {
            return Err(format!("{file}: no column: {d}"));
        }
        format!("{}:{line}:{}: ", d.file, d.col)
    };
    let want = if path.is_empty() {
        head
    } else {
        format!("{head}{path}: ")
    };
    if !rendered.contains(&want) {
        return Err(format!("{file}: {want:?} not in:\n{rendered}"));
    }
    Ok(())
}

#[track_caller]
fn assert_diag(e: &IntentError, file: &str, line: u32, path: &str, message: &str) {
    if let Err(m) = check_diag(e, file, line, path, message) {
        panic!("{m}");
    }
}

#[test]
fn the_base_of_the_corpus_is_valid() {
    // Each fixture is this base with one fault: the base itself must load.
    let base = corpus_dir().join("BASE.valid-intent");
    if let Err(e) = intent::load_file(&base) {
        panic!("the corpus base is invalid:\n{e}");
    }
}

#[test]
fn every_fixture_is_refused_at_the_manifest_line_and_path() {
    let rows = manifest();
    assert!(
        rows.len() >= MIN_FIXTURES,
        "only {} fixtures in EXPECTED.tsv",
        rows.len()
    );
    // The manifest and the folder agree: no fixture without an expectation, and no row without
    // a file.
    let mut on_disk: Vec<String> = std::fs::read_dir(corpus_dir())
        .expect("corpus dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = rows.iter().map(|r| r.file.clone()).collect();
    listed.sort();
    assert_eq!(
        on_disk, listed,
        "tests/fixtures/bad-intents vs EXPECTED.tsv"
    );

    // Every fixture is checked before failing, so one run lists every mismatch.
    let mut failures = Vec::new();
    for r in &rows {
        let path = corpus_dir().join(&r.file);
        let e = load_err(&path);
        if let Err(m) = check_diag(&e, &r.file, r.line, &r.path, &r.message) {
            failures.push(m);
        }
        // Loading from bytes gives the same diagnostics as loading the file.
        let bytes = std::fs::read(&path).expect("fixture");
        let again = intent::load_str(&path.display().to_string(), &bytes).unwrap_err();
        assert_eq!(again.diagnostics(), e.diagnostics(), "{}", r.file);
    }
    assert!(
        failures.is_empty(),
        "{} of {} fixtures not reported as EXPECTED.tsv says:\n\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n\n")
    );
}

#[test]
fn a_file_over_the_size_limit_is_refused_before_it_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("huge.yaml");
    // 9 MiB of plausible YAML (a real file, not sparse): refused on its size.
    let line = "# padding padding padding padding padding padding padding padding padding\n";
    let n: usize = 9 * 1024 * 1024 / line.len() + 1;
    std::fs::write(&p, line.repeat(n)).unwrap();
    let e = load_err(&p);
    assert_diag(
        &e,
        "huge.yaml",
        0,
        "",
        &format!("the limit for an intent file is {MAX_FILE_SIZE} bytes"),
    );
}

#[test]
fn more_nodes_than_the_limit_stop_the_parse() {
    // Under the size limit, over the node limit: one-character block list items.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("nodes.yaml");
    let mut y = String::from("version: 1\nregions:\n");
    y.push_str(&"- a\n".repeat(MAX_NODES + 10));
    assert!(y.len() < usize::try_from(MAX_FILE_SIZE).unwrap());
    std::fs::write(&p, &y).unwrap();
    let e = load_err(&p);
    // Node MAX_NODES+1 is list item MAX_NODES-4 (root map, 2 keys, 1 value, the list = 5 nodes
    // before it), on line 2 + (MAX_NODES - 4).
    let line = u32::try_from(2 + MAX_NODES - 4).unwrap();
    assert_diag(
        &e,
        "nodes.yaml",
        line,
        "",
        "YAML nodes; the file is too big",
    );
}

#[test]
fn more_flow_items_than_the_limit_are_refused_before_parsing() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("flow.yaml");
    let y = format!(
        "version: 1\nregions: [{}]\n",
        "a,".repeat(MAX_FLOW_ITEMS + 1)
    );
    std::fs::write(&p, &y).unwrap();
    let e = load_err(&p);
    assert_diag(&e, "flow.yaml", 2, "", "flow-style items");
}
