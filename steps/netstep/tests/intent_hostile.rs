//! Hostile inputs end in a clear IntentError, never a panic, a hang or unbounded memory.
//! (No timing assertions: the limits themselves bound the work.)

use std::io::Write;

use netstep::intent::{self, IntentError, MAX_FILE_SIZE};

fn load(bytes: &[u8]) -> IntentError {
    match intent::load_str("hostile.yaml", bytes) {
        Ok(_) => panic!("hostile input accepted"),
        Err(e) => e,
    }
}

fn only(e: &IntentError) -> &intent::Diagnostic {
    assert_eq!(e.diagnostics().len(), 1, "{e}");
    &e.diagnostics()[0]
}

#[test]
fn alias_bomb_stops_at_the_first_anchor() {
    // "Billion laughs": nine levels of nine aliases each.
    let mut y = String::from(
        "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
    );
    let names = ["a", "b", "c", "d", "e", "f", "g", "h", "i"];
    for w in names.windows(2) {
        let (prev, cur) = (w[0], w[1]);
        let refs = vec![format!("*{prev}"); 9].join(",");
        y.push_str(&format!("{cur}: &{cur} [{refs}]\n"));
    }
    let e = load(y.as_bytes());
    let d = only(&e);
    assert_eq!((d.line, d.col), (1, 4));
    assert!(
        d.message.contains("anchors (&name) are not supported"),
        "{e}"
    );
    // An alias without an anchor is also rejected (the parser reports the unknown anchor).
    let e = load(b"version: 1\nsubscription: *nothing\n");
    assert_eq!(only(&e).line, 2, "{e}");
}

#[test]
fn fifty_megabyte_file_is_refused_before_reading() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.yaml");
    let f = std::fs::File::create(&path).unwrap();
    // Sparse: 50 MiB by metadata, no disk used, and the loader must not read it.
    f.set_len(50 * 1024 * 1024).unwrap();
    drop(f);
    let e = intent::load_file(&path).unwrap_err();
    let d = only(&e);
    assert_eq!(d.line, 0);
    assert!(d.message.contains("52428800 bytes"), "{e}");
    assert!(d.message.contains("8 MiB"), "{e}");
    assert!(e.to_string().starts_with(&path.display().to_string()));
    // The same from bytes already in memory.
    let big = vec![b' '; usize::try_from(MAX_FILE_SIZE).unwrap() + 1];
    assert!(load(&big).to_string().contains("limit"));
}

fn flow_list(bytes: usize) -> Vec<u8> {
    let n = (bytes - 16) / 2;
    let mut y = Vec::with_capacity(n * 2 + 4);
    y.push(b'[');
    for i in 0..n {
        if i > 0 {
            y.push(b',');
        }
        y.push(b'0');
    }
    y.push(b']');
    y
}

#[test]
fn file_just_under_the_limit_in_flow_style() {
    // ~8 MiB of `[0,0,0,...]`: the scanner would buffer the whole collection; the flow-item
    // cap refuses it before parsing.
    let y = flow_list(usize::try_from(MAX_FILE_SIZE).unwrap());
    assert!(y.len() as u64 <= MAX_FILE_SIZE);
    let e = load(&y);
    let d = only(&e);
    assert!(
        d.message.contains("more than 50000 flow-style items"),
        "{e}"
    );
    assert_eq!((d.line, d.col), (1, 50_001 * 2 - 1));
}

#[test]
fn file_just_under_the_limit_in_block_style() {
    // ~8 MiB of `- 0` lines: streamed, stopped by the node cap.
    let n = (usize::try_from(MAX_FILE_SIZE).unwrap() - 16) / 4;
    let y = "- 0\n".repeat(n);
    let e = load(y.as_bytes());
    let d = only(&e);
    assert!(d.message.contains("more than 500000 YAML nodes"), "{e}");
    assert_eq!(d.line, 500_000);
}

#[test]
fn huge_snapshot_json_is_bounded() {
    let mut y = b"{\"version\":".to_vec();
    y.extend(flow_list(usize::try_from(MAX_FILE_SIZE).unwrap() - 32));
    y.push(b'}');
    let e = intent::Intent::from_snapshot_json("snap.json", &y).unwrap_err();
    assert!(only(&e).message.contains("more than 500000 nodes"), "{e}");
    let e = intent::Intent::from_snapshot_json("snap.json", b"{\"version\": 1, \"version\": 1}")
        .unwrap_err();
    assert!(only(&e).message.contains("duplicate key `version`"), "{e}");
    let deep = format!("{{\"a\":{}{}}}", "[".repeat(10_000), "]".repeat(10_000));
    let e = intent::Intent::from_snapshot_json("snap.json", deep.as_bytes()).unwrap_err();
    assert!(only(&e).message.contains("recursion limit"), "{e}");
    let e = intent::Intent::from_snapshot_json("snap.json", b"{\"version\": 1,").unwrap_err();
    assert!(only(&e).message.contains("invalid snapshot JSON"), "{e}");
}

#[test]
fn deep_nesting_is_refused() {
    let depth = 10_000;
    let flow = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    let e = load(flow.as_bytes());
    // The scanner looks ahead within a line, so its own recursion limit may fire before the
    // loader's depth limit of 64; either way the answer is a one-line "nesting" error.
    let d = only(&e);
    assert!(d.message.contains("nesting"), "{e}");
    assert_eq!(d.line, 1);
    let maps = format!("{}1{}", "{a: ".repeat(depth), "}".repeat(depth));
    assert!(only(&load(maps.as_bytes())).message.contains("nesting"));
    // Block mappings, one level per line: the loader's own limit fires at the 65th level.
    let lines: String = (0..depth.min(3000))
        .map(|i| format!("{}k:\n", " ".repeat(i)))
        .collect();
    let e = load(lines.as_bytes());
    let d = only(&e);
    assert!(d.message.contains("nesting deeper than 64 levels"), "{e}");
    assert_eq!((d.line, d.col), (65, 65));
    // Block nesting on one line trips the parser's own recursion limit first; same outcome.
    let block = "- ".repeat(depth) + "x\n";
    let e = load(block.as_bytes());
    assert!(only(&e).message.contains("nesting"), "{e}");
}

#[test]
fn invalid_utf8_has_a_position() {
    let e = load(b"version: 1\nsubscription: ab\xffcd\n");
    let d = only(&e);
    assert_eq!((d.line, d.col), (2, 17));
    assert!(
        d.message
            .contains("not valid UTF-8 (byte 0xff at offset 27)"),
        "{e}"
    );
    assert_eq!(
        e.to_string(),
        "hostile.yaml:2:17: the file is not valid UTF-8 (byte 0xff at offset 27); is it a binary file?"
    );
}

#[test]
fn random_binary_is_rejected() {
    // Deterministic xorshift noise, with and without a valid-UTF-8 prefix.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut noise = Vec::with_capacity(1 << 20);
    for _ in 0..(1 << 20) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        noise.push((x >> 24) as u8);
    }
    let e = load(&noise);
    assert!(!e.diagnostics().is_empty());
    assert!(e.to_string().starts_with("hostile.yaml:"), "{e}");
    // Noise restricted to ASCII (valid UTF-8) but full of control characters.
    let ascii: Vec<u8> = noise.iter().map(|b| b & 0x7f).collect();
    let e = load(&ascii);
    let d = only(&e);
    assert!(
        d.message.contains("control character") || d.message.contains("YAML"),
        "{e}"
    );
    // Printable noise: whatever the parser makes of it, the answer is an error.
    let printable: Vec<u8> = noise.iter().map(|b| b' ' + (b % 95)).collect();
    assert!(!load(&printable).diagnostics().is_empty());
}

#[test]
fn nul_bytes_and_multiple_documents() {
    let e = load(b"version: 1\n\0\n");
    assert_eq!((only(&e).line, only(&e).col), (2, 1));
    let e = load(b"version: 1\n---\nversion: 1\n");
    assert!(only(&e).message.contains("only one YAML document"), "{e}");
}

#[test]
fn not_a_mapping_and_empty() {
    let e = load(b"- just\n- a list\n");
    assert!(only(&e).message.contains("expected a mapping"), "{e}");
    let e = load(b"");
    assert!(only(&e).message.contains("empty"), "{e}");
    let e = load(b"# only a comment\n");
    assert!(only(&e).message.contains("empty"), "{e}");
}

#[test]
fn custom_tags_are_rejected_but_str_is_allowed() {
    let e = load(b"version: !!python/object:os.system 1\n");
    assert!(only(&e).message.contains("not supported"), "{e}");
    // `!!str` marks a scalar as a string: `!!str yes` is the text "yes", not a boolean.
    let e = load(b"version: 1\nsubscription: !!str 1\n");
    assert!(!e.to_string().contains("found the number"), "{e}");
}

#[test]
fn missing_file_and_directory() {
    let dir = tempfile::tempdir().unwrap();
    let e = intent::load_file(&dir.path().join("nope.yaml")).unwrap_err();
    assert!(only(&e).message.contains("cannot read"), "{e}");
    let e = intent::load_file(dir.path()).unwrap_err();
    assert!(only(&e).message.contains("not a regular file"), "{e}");
    let p = dir.path().join("ok.yaml");
    let mut f = std::fs::File::create(&p).unwrap();
    f.write_all(b"version: 1\n").unwrap();
    let e = intent::load_file(&p).unwrap_err();
    assert!(
        e.to_string()
            .contains("missing required field `subscription`"),
        "{e}"
    );
}

#[test]
fn random_mutations_of_a_valid_intent_never_panic() {
    // Deterministic mutations (delete/duplicate/replace bytes and lines) of the valid example:
    // every outcome must be Ok or an IntentError with at least one diagnostic.
    let base = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/intents/minimal.yaml"),
    )
    .unwrap();
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let alphabet = b" -:[]{},\"'#&*!|>\n0123456789abcxyz./";
    let mut rejected = 0;
    for _ in 0..3000 {
        let mut y = base.clone();
        for _ in 0..(1 + next() % 4) {
            let len = y.len() as u64;
            let at = usize::try_from(next() % len).unwrap();
            match next() % 4 {
                0 => {
                    y.remove(at);
                }
                1 => y.insert(
                    at,
                    alphabet[usize::try_from(next() % alphabet.len() as u64).unwrap()],
                ),
                2 => y[at] = alphabet[usize::try_from(next() % alphabet.len() as u64).unwrap()],
                _ => {
                    // Duplicate a line.
                    let start = y[..at]
                        .iter()
                        .rposition(|b| *b == b'\n')
                        .map_or(0, |p| p + 1);
                    let end = y[at..]
                        .iter()
                        .position(|b| *b == b'\n')
                        .map_or(y.len(), |p| at + p + 1);
                    let line = y[start..end].to_vec();
                    y.splice(start..start, line);
                }
            }
        }
        if let Err(e) = intent::load_str("m.yaml", &y) {
            assert!(!e.diagnostics().is_empty());
            rejected += 1;
        }
    }
    assert!(
        rejected > 1000,
        "mutations should mostly break the intent ({rejected})"
    );
}

#[test]
fn a_tab_in_the_indentation_is_reported_on_its_own_line() {
    // The scanner notices the tab while reading the scalar of the line before; the diagnostic
    // names the line holding the tab.
    let e = load(b"version: 1\nnetwork_manager:\n  name: nm\n\tlocation: westeurope\n");
    let d = only(&e);
    assert_eq!((d.line, d.col), (4, 1), "{e}");
    assert!(d.message.contains("a tab in the indentation"), "{e}");
    // A tab inside a value is not indentation: no such diagnostic.
    let e = load(b"version: 1\nsubscription: \"a\tb\"\n");
    assert!(!e.to_string().contains("tab in the indentation"), "{e}");
}

#[test]
fn a_file_of_only_document_markers_is_empty() {
    for y in ["---\n", "---\n...\n", "# c\n---\n# d\n"] {
        let e = load(y.as_bytes());
        let d = only(&e);
        assert_eq!(d.line, 0, "{y:?}: {e}");
        assert!(d.message.contains("the file is empty"), "{y:?}: {e}");
    }
}
