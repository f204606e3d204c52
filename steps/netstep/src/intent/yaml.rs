//! A small, hardened YAML front end: saphyr-parser's event stream turned into a tree of nodes
//! that each carry their line and column.
//!
//! Limits (all violations are ordinary diagnostics, never panics or unbounded work):
//! - anchors (`&a`) and aliases (`*a`) are rejected outright, so an alias bomb stops at its
//!   first anchor;
//! - nesting deeper than [`MAX_DEPTH`] stops the parse;
//! - more than [`MAX_NODES`] nodes stops the parse (bounded memory whatever the input);
//! - duplicate mapping keys, non-scalar keys, explicit tags other than `!!str`, and more than
//!   one document are errors;
//! - the input must be UTF-8 (checked before parsing, with the position of the first bad byte).

use std::borrow::Cow;
use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle, Span};

/// Maximum nesting depth of sequences and mappings.
pub const MAX_DEPTH: usize = 64;
/// Maximum number of nodes (scalars, sequences, mappings) in one document.
pub const MAX_NODES: usize = 500_000;

/// A position in the source: 1-based line and 1-based column (in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Pos {
    /// Line, 1-based (0 when unknown).
    pub line: u32,
    /// Column, 1-based, in characters (0 when unknown).
    pub col: u32,
}

impl Pos {
    fn from_span(span: &Span) -> Pos {
        Pos {
            line: u32::try_from(span.start.line()).unwrap_or(u32::MAX),
            col: u32::try_from(span.start.col() + 1).unwrap_or(u32::MAX),
        }
    }
}

/// One YAML node with its position.
#[derive(Debug, Clone)]
pub struct Node {
    /// Where the node starts.
    pub pos: Pos,
    /// What it is.
    pub kind: NodeKind,
}

/// The three kinds of YAML nodes.
#[derive(Debug, Clone)]
pub enum NodeKind {
    /// A scalar: its text and whether it was written plain (unquoted, untagged), which decides
    /// whether it may be read as a number, boolean or null.
    Scalar {
        /// The scalar's value after unescaping/folding.
        value: String,
        /// True for plain (unquoted, untagged) scalars.
        plain: bool,
    },
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping; keys are scalars (checked), in source order, without duplicates (checked).
    Map(Vec<(Node, Node)>),
}

impl Node {
    /// A short description of the node's kind for error messages.
    pub fn describe(&self) -> String {
        match &self.kind {
            NodeKind::Scalar { value, plain } => {
                if *plain {
                    match plain_kind(value) {
                        PlainKind::Null => "null".to_string(),
                        PlainKind::Bool => format!("the boolean {value}"),
                        PlainKind::Int | PlainKind::Float => format!("the number {value}"),
                        PlainKind::String => format!("the string {value:?}"),
                    }
                } else {
                    format!("the string {value:?}")
                }
            }
            NodeKind::Seq(_) => "a list".to_string(),
            NodeKind::Map(_) => "a mapping".to_string(),
        }
    }

    /// The key text of a scalar node (keys are always scalars).
    pub fn key_str(&self) -> &str {
        match &self.kind {
            NodeKind::Scalar { value, .. } => value,
            _ => "",
        }
    }
}

/// How a plain scalar would be typed by YAML 1.1 / 1.2 tools.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlainKind {
    /// `null`, `~`, or empty.
    Null,
    /// `true`/`false` (1.2) and `yes`/`no`/`on`/`off`/`y`/`n` (1.1), any case.
    Bool,
    /// A decimal, octal or hexadecimal integer.
    Int,
    /// A float, including `.inf` and `.nan`.
    Float,
    /// Anything else: a string for every YAML version.
    String,
}

/// Classifies a plain scalar the way the most liberal common YAML reader would.
pub fn plain_kind(v: &str) -> PlainKind {
    let lower = v.to_ascii_lowercase();
    match lower.as_str() {
        "" | "~" | "null" => return PlainKind::Null,
        "true" | "false" | "yes" | "no" | "on" | "off" | "y" | "n" => return PlainKind::Bool,
        ".inf" | "+.inf" | "-.inf" | ".nan" => return PlainKind::Float,
        _ => {}
    }
    let body = lower.strip_prefix(['+', '-']).unwrap_or(&lower);
    if body.is_empty() {
        return PlainKind::String;
    }
    let digits_us = |s: &str, radix: u32| {
        !s.is_empty() && s.chars().all(|c| c == '_' || c.is_digit(radix)) && !s.starts_with('_')
    };
    if let Some(h) = body.strip_prefix("0x") {
        return if digits_us(h, 16) {
            PlainKind::Int
        } else {
            PlainKind::String
        };
    }
    if let Some(o) = body.strip_prefix("0o") {
        return if digits_us(o, 8) {
            PlainKind::Int
        } else {
            PlainKind::String
        };
    }
    if digits_us(body, 10) {
        return PlainKind::Int;
    }
    // Sexagesimal (YAML 1.1: 1:30) is read as a number by some tools.
    if body.contains(':')
        && body
            .split(':')
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
    {
        return PlainKind::Int;
    }
    if body.parse::<f64>().is_ok()
        && body
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | '+' | '-' | '_'))
        && body.chars().any(|c| c.is_ascii_digit())
    {
        return PlainKind::Float;
    }
    PlainKind::String
}

/// An error of the YAML layer, with its position.
#[derive(Debug, Clone)]
pub struct YamlError {
    /// Where.
    pub pos: Pos,
    /// What.
    pub message: String,
}

/// Checks that `bytes` are UTF-8 and returns the text without a leading byte-order mark.
pub fn decode_utf8(bytes: &[u8]) -> Result<&str, YamlError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    match std::str::from_utf8(bytes) {
        Ok(s) => Ok(s),
        Err(e) => {
            let good = &bytes[..e.valid_up_to()];
            // The valid prefix is UTF-8 by construction.
            let prefix = std::str::from_utf8(good).unwrap_or("");
            let line = prefix.matches('\n').count() + 1;
            let col = prefix.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            let bad = bytes[e.valid_up_to()];
            Err(YamlError {
                pos: Pos {
                    line: u32::try_from(line).unwrap_or(u32::MAX),
                    col: u32::try_from(col).unwrap_or(u32::MAX),
                },
                message: format!(
                    "the file is not valid UTF-8 (byte 0x{bad:02x} at offset {}); is it a binary file?",
                    e.valid_up_to()
                ),
            })
        }
    }
}

/// Maximum number of flow-style item starts (`[`, `{`, `,`, counted anywhere in the text).
///
/// The YAML scanner buffers a whole flow collection (`[...]`, `{...}`) before emitting its
/// first event (the collection could be an implicit key), so memory grows with the number of
/// tokens inside flow collections. Capping their possible number keeps memory bounded; large
/// lists belong in block style (`- item`), which is streamed.
pub const MAX_FLOW_ITEMS: usize = 50_000;

/// Rejects control characters YAML forbids, with a position, before the scanner sees them (the
/// scanner's own message for them is less helpful), and enforces [`MAX_FLOW_ITEMS`].
fn check_printable(text: &str) -> Result<(), YamlError> {
    let (mut line, mut col) = (1u32, 1u32);
    let mut flow_items = 0usize;
    for ch in text.chars() {
        if matches!(ch, '[' | '{' | ',') {
            flow_items += 1;
            if flow_items > MAX_FLOW_ITEMS {
                return Err(YamlError {
                    pos: Pos { line, col },
                    message: format!(
                        "more than {MAX_FLOW_ITEMS} flow-style items (`[`, `{{`, `,`); write long lists in block style (one `- item` per line)"
                    ),
                });
            }
        }
        let bad = matches!(ch, '\u{0}'..='\u{8}' | '\u{b}' | '\u{c}' | '\u{e}'..='\u{1f}' | '\u{7f}')
            || ch == '\u{fffe}'
            || ch == '\u{ffff}';
        if bad {
            return Err(YamlError {
                pos: Pos { line, col },
                message: format!(
                    "control character U+{:04X} is not allowed in YAML; is this a binary file?",
                    ch as u32
                ),
            });
        }
        if ch == '\n' {
            line = line.saturating_add(1);
            col = 1;
        } else {
            col = col.saturating_add(1);
        }
    }
    Ok(())
}

enum Frame {
    Seq(Pos, Vec<Node>),
    Map(Pos, Vec<(Node, Node)>, Option<Node>, HashMap<String, u32>),
}

/// Parses one YAML document into a node tree. An empty document yields `None`.
/// Fatal errors stop at the first; duplicate keys are all collected.
pub fn parse(text: &str) -> Result<Option<Node>, Vec<YamlError>> {
    parse_inner(text)
        .map_err(|e| vec![e])
        .and_then(
            |(root, dups)| {
                if dups.is_empty() { Ok(root) } else { Err(dups) }
            },
        )
}

fn parse_inner(text: &str) -> Result<(Option<Node>, Vec<YamlError>), YamlError> {
    check_printable(text)?;
    let mut dups = Vec::new();
    let mut parser = Parser::new_from_str(text);
    let mut stack: Vec<Frame> = Vec::new();
    let mut root: Option<Node> = None;
    let mut documents = 0usize;
    let mut nodes = 0usize;
    loop {
        let (event, span) = match parser.next_event() {
            None => break,
            Some(Err(e)) => {
                let m = e.marker();
                // The scanner reports a tab where the token it was reading started (often the
                // line before); name the line holding the tab instead.
                if e.info().contains("tab")
                    && let Some(pos) = indentation_tab(text, m.line())
                {
                    return Err(YamlError {
                        pos,
                        message: "YAML syntax error: a tab in the indentation; YAML indents with spaces only".to_string(),
                    });
                }
                return Err(YamlError {
                    pos: Pos {
                        line: u32::try_from(m.line()).unwrap_or(u32::MAX),
                        col: u32::try_from(m.col() + 1).unwrap_or(u32::MAX),
                    },
                    message: if e.info().contains("recursion limit") {
                        "nesting is too deep (YAML parser recursion limit); an intent file never needs this".to_string()
                    } else if e.info().contains("alias") || e.info().contains("anchor") {
                        format!(
                            "YAML syntax error: {} (a plain `*` or `&` starts an alias or anchor; quote it: \"*\")",
                            e.info()
                        )
                    } else {
                        format!("YAML syntax error: {}", e.info())
                    },
                });
            }
            Some(Ok(x)) => x,
        };
        let pos = Pos::from_span(&span);
        let is_seq_start = matches!(event, Event::SequenceStart(..));
        let err = |message: String| Err(YamlError { pos, message });
        let completed: Node = match event {
            Event::StreamStart | Event::Nothing | Event::DocumentEnd => continue,
            Event::StreamEnd => break,
            Event::DocumentStart(_) => {
                documents += 1;
                if documents > 1 {
                    return err("only one YAML document is allowed (found a second `---`)".into());
                }
                continue;
            }
            Event::Alias(_) => {
                return err(
                    "YAML aliases (*name) are not supported in intent files; write the value out (for a literal `*`, quote it: \"*\")"
                        .into(),
                );
            }
            Event::Scalar(value, style, anchor, tag) => {
                if anchor != 0 {
                    return err(
                        "YAML anchors (&name) are not supported in intent files; write the value out"
                            .into(),
                    );
                }
                let mut plain = matches!(style, ScalarStyle::Plain);
                if let Some(t) = tag {
                    if is_str_tag(&t) {
                        plain = false;
                    } else {
                        return err(format!(
                            "YAML tag {}{} is not supported (only !!str)",
                            t.handle, t.suffix
                        ));
                    }
                }
                Node {
                    pos,
                    kind: NodeKind::Scalar {
                        value: match value {
                            Cow::Borrowed(s) => s.to_string(),
                            Cow::Owned(s) => s,
                        },
                        plain,
                    },
                }
            }
            Event::SequenceStart(anchor, tag) | Event::MappingStart(anchor, tag) => {
                if anchor != 0 {
                    return err(
                        "YAML anchors (&name) are not supported in intent files; write the value out"
                            .into(),
                    );
                }
                if let Some(t) = tag {
                    return err(format!(
                        "YAML tag {}{} is not supported here",
                        t.handle, t.suffix
                    ));
                }
                if stack.len() >= MAX_DEPTH {
                    return err(format!(
                        "nesting deeper than {MAX_DEPTH} levels; an intent file never needs this"
                    ));
                }
                nodes += 1;
                if nodes > MAX_NODES {
                    return err(format!(
                        "more than {MAX_NODES} YAML nodes; the file is too big"
                    ));
                }
                if is_seq_start {
                    stack.push(Frame::Seq(pos, Vec::new()));
                } else {
                    stack.push(Frame::Map(pos, Vec::new(), None, HashMap::new()));
                }
                continue;
            }
            Event::SequenceEnd => match stack.pop() {
                Some(Frame::Seq(p, items)) => Node {
                    pos: p,
                    kind: NodeKind::Seq(items),
                },
                _ => return err("internal: unbalanced sequence end".into()),
            },
            Event::MappingEnd => match stack.pop() {
                Some(Frame::Map(p, entries, _, _)) => Node {
                    pos: p,
                    kind: NodeKind::Map(entries),
                },
                _ => return err("internal: unbalanced mapping end".into()),
            },
        };
        if matches!(completed.kind, NodeKind::Scalar { .. }) {
            nodes += 1;
            if nodes > MAX_NODES {
                return err(format!(
                    "more than {MAX_NODES} YAML nodes; the file is too big"
                ));
            }
        }
        attach(&mut stack, &mut root, completed, &mut dups)?;
    }
    Ok((root, dups))
}

/// The first tab in the leading whitespace of a line, at or after 1-based line `from`.
fn indentation_tab(text: &str, from: usize) -> Option<Pos> {
    text.split('\n')
        .enumerate()
        .skip(from.saturating_sub(1))
        .find_map(|(i, l)| {
            let lead = l.len() - l.trim_start_matches([' ', '\t']).len();
            l[..lead].find('\t').map(|c| Pos {
                line: u32::try_from(i + 1).unwrap_or(u32::MAX),
                col: u32::try_from(c + 1).unwrap_or(u32::MAX),
            })
        })
}

fn is_str_tag(t: &saphyr_parser::Tag) -> bool {
    (t.handle == "!!" && t.suffix == "str")
        || (t.handle.is_empty() && t.suffix == "tag:yaml.org,2002:str")
        || (t.handle == "tag:yaml.org,2002:" && t.suffix == "str")
}

/// Adds a completed node to its parent (or makes it the root).
fn attach(
    stack: &mut [Frame],
    root: &mut Option<Node>,
    node: Node,
    dups: &mut Vec<YamlError>,
) -> Result<(), YamlError> {
    match stack.last_mut() {
        None => {
            *root = Some(node);
            Ok(())
        }
        Some(Frame::Seq(_, items)) => {
            items.push(node);
            Ok(())
        }
        Some(Frame::Map(_, entries, pending_key, seen)) => match pending_key.take() {
            None => {
                let NodeKind::Scalar { value, .. } = &node.kind else {
                    return Err(YamlError {
                        pos: node.pos,
                        message: "mapping keys must be plain strings, not lists or mappings".into(),
                    });
                };
                if let Some(first) = seen.get(value) {
                    dups.push(YamlError {
                        pos: node.pos,
                        message: format!("duplicate key `{value}` (first defined at line {first})"),
                    });
                } else {
                    seen.insert(value.clone(), node.pos.line);
                }
                *pending_key = Some(node);
                Ok(())
            }
            Some(key) => {
                entries.push((key, node));
                Ok(())
            }
        },
    }
}

/// Parses a JSON document (a stored snapshot) into the same node tree, without positions
/// (every node gets line 0). Strings become quoted scalars, numbers/booleans/null plain ones.
/// Duplicate keys are errors; at most [`MAX_NODES`] nodes and serde_json's nesting limit (128)
/// apply, so memory stays bounded.
pub fn parse_json(text: &str) -> Result<Node, YamlError> {
    use serde::de::DeserializeSeed;
    let budget = std::cell::Cell::new(0usize);
    let mut de = serde_json::Deserializer::from_str(text);
    let node = JsonSeed { budget: &budget }
        .deserialize(&mut de)
        .and_then(|n| de.end().map(|()| n))
        .map_err(|e| YamlError {
            pos: Pos {
                line: u32::try_from(e.line()).unwrap_or(u32::MAX),
                col: u32::try_from(e.column()).unwrap_or(u32::MAX),
            },
            message: format!("invalid snapshot JSON: {e}"),
        })?;
    Ok(node)
}

struct JsonSeed<'b> {
    budget: &'b std::cell::Cell<usize>,
}

impl JsonSeed<'_> {
    fn count<E: serde::de::Error>(&self) -> Result<(), E> {
        let n = self.budget.get() + 1;
        self.budget.set(n);
        if n > MAX_NODES {
            return Err(E::custom(format!("more than {MAX_NODES} nodes")));
        }
        Ok(())
    }

    fn scalar<E: serde::de::Error>(&self, value: String, plain: bool) -> Result<Node, E> {
        self.count()?;
        Ok(Node {
            pos: Pos::default(),
            kind: NodeKind::Scalar { value, plain },
        })
    }
}

impl<'de> serde::de::DeserializeSeed<'de> for JsonSeed<'_> {
    type Value = Node;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for JsonSeed<'_> {
    type Value = Node;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Node, E> {
        self.scalar(v.to_string(), true)
    }
    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Node, E> {
        self.scalar(v.to_string(), true)
    }
    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Node, E> {
        self.scalar(v.to_string(), true)
    }
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Node, E> {
        self.scalar(v.to_string(), true)
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Node, E> {
        self.scalar(v.to_string(), false)
    }
    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Node, E> {
        self.scalar(v, false)
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<Node, E> {
        self.scalar("null".to_string(), true)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        self.count::<A::Error>()?;
        let mut items = Vec::new();
        while let Some(n) = seq.next_element_seed(JsonSeed {
            budget: self.budget,
        })? {
            items.push(n);
        }
        Ok(Node {
            pos: Pos::default(),
            kind: NodeKind::Seq(items),
        })
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        self.count::<A::Error>()?;
        let mut entries: Vec<(Node, Node)> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        while let Some(k) = map.next_key::<String>()? {
            if !seen.insert(k.clone()) {
                return Err(serde::de::Error::custom(format!("duplicate key `{k}`")));
            }
            let key = self.scalar::<A::Error>(k, false)?;
            let value = map.next_value_seed(JsonSeed {
                budget: self.budget,
            })?;
            entries.push((key, value));
        }
        Ok(Node {
            pos: Pos::default(),
            kind: NodeKind::Map(entries),
        })
    }
}
