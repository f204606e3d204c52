//! A small YAML loader on top of `saphyr-parser` that keeps line numbers.
//!
//! Produces a [`Node`] tree: scalars stay text (Argo treats nearly everything as
//! strings; `limit: 3` and `limit: "3"` mean the same), mappings keep key order and
//! key lines. Anchors/aliases and `<<` merge keys are resolved; duplicate keys are an
//! error, as in Argo's strict decoder.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle, ScanError, Span};

/// A YAML node with the (1-based) line it starts on.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub value: Value,
    pub line: usize,
}

/// A mapping entry: key text, key line and value.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub key: String,
    pub line: usize,
    pub value: Node,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A scalar; `plain` is false for quoted scalars and explicit `!!str` tags.
    Scalar {
        text: String,
        plain: bool,
    },
    Seq(Vec<Node>),
    Map(Vec<Entry>),
}

/// A YAML syntax or structure error.
#[derive(Debug, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct YamlError {
    pub line: usize,
    pub message: String,
}

impl From<ScanError> for YamlError {
    fn from(e: ScanError) -> Self {
        YamlError {
            line: e.marker().line(),
            message: e.info().to_string(),
        }
    }
}

impl Node {
    /// True for `~`, `null`, `Null`, `NULL` and the empty plain scalar.
    pub fn is_null(&self) -> bool {
        matches!(&self.value, Value::Scalar { text, plain: true }
            if matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL"))
    }

    /// The scalar text (numbers and booleans as written), or None for collections/null.
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Scalar { text, .. } if !self.is_null() => Some(text),
            _ => None,
        }
    }

    pub fn as_seq(&self) -> Option<&[Node]> {
        match &self.value {
            Value::Seq(items) => Some(items),
            _ => None,
        }
    }

    pub fn as_map(&self) -> Option<&[Entry]> {
        match &self.value {
            Value::Map(entries) => Some(entries),
            _ => None,
        }
    }

    /// Value of a mapping key (None if not a mapping or key absent).
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?
            .iter()
            .find(|e| e.key == key)
            .map(|e| &e.value)
    }

    /// A short name of the node's type, for error messages.
    pub fn type_name(&self) -> &'static str {
        if self.is_null() {
            return "null";
        }
        match &self.value {
            Value::Scalar { .. } => "a scalar",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }
}

/// Parses every document of a (multi-document) YAML stream.
pub fn load_all(src: &str) -> Result<Vec<Node>, YamlError> {
    let mut loader = Loader {
        parser: Parser::new_from_str(src),
        anchors: HashMap::new(),
    };
    let mut docs = Vec::new();
    loop {
        let (ev, span) = loader.next()?;
        match ev {
            Event::StreamStart | Event::DocumentEnd | Event::Nothing => {}
            Event::StreamEnd => break,
            Event::DocumentStart(_) => {
                let (ev, span) = loader.next()?;
                if matches!(ev, Event::DocumentEnd) {
                    continue;
                }
                let node = loader.node(ev, span)?;
                docs.push(node);
            }
            other => {
                return Err(YamlError {
                    line: span.start.line(),
                    message: format!("unexpected YAML event {other:?}"),
                });
            }
        }
    }
    Ok(docs)
}

struct Loader<'a> {
    parser: Parser<'a, saphyr_parser::StrInput<'a>>,
    anchors: HashMap<usize, Node>,
}

impl<'a> Loader<'a> {
    fn next(&mut self) -> Result<(Event<'a>, Span), YamlError> {
        match self.parser.next_event() {
            Some(r) => Ok(r?),
            None => Err(YamlError {
                line: 0,
                message: "unexpected end of YAML stream".into(),
            }),
        }
    }

    fn node(&mut self, ev: Event<'a>, span: Span) -> Result<Node, YamlError> {
        let line = span.start.line();
        let (node, anchor) = match ev {
            Event::Scalar(text, style, anchor, tag) => {
                let explicit_str = tag.as_ref().is_some_and(|t| t.suffix == "str");
                let plain = style == ScalarStyle::Plain && !explicit_str;
                (
                    Node {
                        value: Value::Scalar {
                            text: text.into_owned(),
                            plain,
                        },
                        line,
                    },
                    anchor,
                )
            }
            Event::Alias(id) => {
                return self.anchors.get(&id).cloned().ok_or(YamlError {
                    line,
                    message: "alias refers to an unknown anchor".into(),
                });
            }
            Event::SequenceStart(anchor, _) => {
                let mut items = Vec::new();
                loop {
                    let (ev, sp) = self.next()?;
                    if matches!(ev, Event::SequenceEnd) {
                        break;
                    }
                    items.push(self.node(ev, sp)?);
                }
                (
                    Node {
                        value: Value::Seq(items),
                        line,
                    },
                    anchor,
                )
            }
            Event::MappingStart(anchor, _) => (self.mapping(line)?, anchor),
            other => {
                return Err(YamlError {
                    line,
                    message: format!("unexpected YAML event {other:?}"),
                });
            }
        };
        if anchor > 0 {
            self.anchors.insert(anchor, node.clone());
        }
        Ok(node)
    }

    fn mapping(&mut self, line: usize) -> Result<Node, YamlError> {
        let mut entries: Vec<Entry> = Vec::new();
        let mut merges: Vec<Node> = Vec::new();
        loop {
            let (ev, sp) = self.next()?;
            if matches!(ev, Event::MappingEnd) {
                break;
            }
            let key_node = self.node(ev, sp)?;
            let (ev, sp) = self.next()?;
            let value = self.node(ev, sp)?;
            let key = match &key_node.value {
                Value::Scalar { text, plain } => {
                    if *plain && text == "<<" {
                        merges.push(value);
                        continue;
                    }
                    text.clone()
                }
                _ => {
                    return Err(YamlError {
                        line: key_node.line,
                        message: "mapping keys must be scalars".into(),
                    });
                }
            };
            if let Some(prev) = entries.iter().find(|e| e.key == key) {
                return Err(YamlError {
                    line: key_node.line,
                    message: format!(
                        "duplicate key `{key}` (first defined on line {})",
                        prev.line
                    ),
                });
            }
            entries.push(Entry {
                key,
                line: key_node.line,
                value,
            });
        }
        // `<<: *base` / `<<: [*a, *b]`: explicit keys win, earlier merges win over later.
        for merge in merges {
            let sources: Vec<Node> = match merge.value {
                Value::Map(_) => vec![merge],
                Value::Seq(items) => items,
                Value::Scalar { .. } => {
                    return Err(YamlError {
                        line: merge.line,
                        message: "merge key `<<` needs a mapping or a list of mappings".into(),
                    });
                }
            };
            for src in sources {
                let Value::Map(src_entries) = src.value else {
                    return Err(YamlError {
                        line: src.line,
                        message: "merge key `<<` needs a mapping or a list of mappings".into(),
                    });
                };
                for e in src_entries {
                    if !entries.iter().any(|x| x.key == e.key) {
                        entries.push(e);
                    }
                }
            }
        }
        Ok(Node {
            value: Value::Map(entries),
            line,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_multi_docs_with_lines_anchors_and_merges() {
        let src =
            "a: 1\nb:\n  - &x {k: v}\n  - *x\n---\nbase: &b {p: 1, q: 2}\nm:\n  <<: *b\n  q: 3\n";
        let docs = load_all(src).unwrap();
        assert_eq!(docs.len(), 2);
        let b = docs[0].get("b").unwrap().as_seq().unwrap();
        assert_eq!(b[1].get("k").unwrap().as_str(), Some("v"));
        assert_eq!(b[0].line, 3);
        let m = docs[1].get("m").unwrap();
        assert_eq!(m.get("p").unwrap().as_str(), Some("1"));
        assert_eq!(m.get("q").unwrap().as_str(), Some("3"));
    }

    #[test]
    fn duplicate_keys_are_errors() {
        let err = load_all("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!(err.line, 3);
        assert!(err.message.contains("duplicate key `a`"), "{err}");
    }

    #[test]
    fn null_and_quoted() {
        let d = &load_all("a: ~\nb: ''\nc:\nd: \"null\"\n").unwrap()[0];
        assert!(d.get("a").unwrap().is_null());
        assert_eq!(d.get("b").unwrap().as_str(), Some(""));
        assert!(d.get("c").unwrap().is_null());
        assert_eq!(d.get("d").unwrap().as_str(), Some("null"));
    }

    #[test]
    fn syntax_error_has_line() {
        let err = load_all("a: 1\nb: [1, 2\nc: 3\n").unwrap_err();
        assert!(err.line >= 2, "{err}");
    }
}
