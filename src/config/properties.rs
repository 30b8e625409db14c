//! Reading a `.properties` text into key -> (value, line), with `java_properties` doing the
//! syntax (comments, `=`/`:`/space separators, `\` continuations and escapes).
//! The file is read as UTF-8 (Java's own default is ISO-8859-1).

use std::collections::HashMap;
use std::path::Path;

use java_properties::{LineContent, PropertiesIter};

use super::error::{ConfigWarning, Problem};

/// The last value of one key and the line it is on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Property {
    pub key: String,
    pub value: String,
    pub line: usize,
}

/// The key/value pairs of one file, each key once (the last occurrence wins), in the order the
/// keys first appear.
#[derive(Debug, Default)]
pub(crate) struct Properties {
    pub items: Vec<Property>,
    index: HashMap<String, usize>,
    /// One warning per repeated key occurrence.
    pub duplicates: Vec<ConfigWarning>,
}

impl Properties {
    pub fn get(&self, key: &str) -> Option<&Property> {
        self.index.get(key).and_then(|&i| self.items.get(i))
    }

    fn insert(&mut self, origin: &Path, key: String, value: String, line: usize) {
        match self.index.get(&key).and_then(|&i| self.items.get_mut(i)) {
            Some(existing) => {
                self.duplicates.push(ConfigWarning::DuplicateKey {
                    path: origin.to_path_buf(),
                    line,
                    key,
                    previous_line: existing.line,
                });
                existing.value = value;
                existing.line = line;
            }
            None => {
                self.index.insert(key.clone(), self.items.len());
                self.items.push(Property { key, value, line });
            }
        }
    }
}

/// Parses `text` (the file's contents, already UTF-8). A syntax error (a bad `\u` escape) is the
/// only failure; the parser cannot go on after one.
pub(crate) fn parse(text: &str, origin: &Path) -> Result<Properties, Problem> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut properties = Properties::default();
    for line in PropertiesIter::new_with_encoding(text.as_bytes(), encoding_rs::UTF_8) {
        let line = line.map_err(|e| Problem {
            path: origin.to_path_buf(),
            line: e.line_number(),
            message: syntax_message(&e),
        })?;
        let number = line.line_number();
        if let LineContent::KVPair(key, value) = line.consume_content() {
            properties.insert(origin, key, value, number);
        }
    }
    Ok(properties)
}

/// Appends `text` escaped so that [`parse`] reads it back as it is, as a key or as a value:
/// the separators, comment marks, backslashes and every space (a value is trimmed) with a
/// backslash, control characters as `\uXXXX`.
pub(crate) fn write_escaped(text: &str, out: &mut String) {
    for c in text.chars() {
        match c {
            '\\' | ' ' | ':' | '=' | '!' | '#' => {
                out.push('\\');
                out.push(c);
            }
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\u{c}' => out.push_str("\\f"),
            c if c.is_control() || c.is_whitespace() || c == '\u{feff}' => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
            c => out.push(c),
        }
    }
}

/// "Malformed \uxxxx encoding: not hex. (line_number = 3)" -> "malformed \uxxxx escape: not hex"
fn syntax_message(e: &java_properties::PropertiesError) -> String {
    let full = e.to_string();
    let text = full.split(" (line_number").next().unwrap_or(&full);
    let text = text.trim_end_matches('.').replace("encoding", "escape");
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => "syntax error".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(text: &str) -> Vec<(String, String, usize)> {
        let props = parse(text, Path::new("t.properties")).unwrap();
        props
            .items
            .into_iter()
            .map(|p| (p.key, p.value, p.line))
            .collect()
    }

    fn pair(key: &str, value: &str, line: usize) -> (String, String, usize) {
        (key.to_string(), value.to_string(), line)
    }

    #[test]
    fn keys_values_and_lines() {
        let text = "# comment\n! also a comment\n\na=1\nb : two words  \nc 3\nd=\n  e = x\\\n    y\nf=after continuation\n";
        assert_eq!(
            pairs(text),
            vec![
                pair("a", "1", 4),
                pair("b", "two words  ", 5),
                pair("c", "3", 6),
                pair("d", "", 7),
                pair("e", "xy", 8),
                pair("f", "after continuation", 10),
            ]
        );
    }

    #[test]
    fn hash_after_value_is_part_of_the_value() {
        assert_eq!(
            pairs("port=10443 # comment\n"),
            vec![pair("port", "10443 # comment", 1)]
        );
    }

    #[test]
    fn utf8_text_survives() {
        let text = "secret=pässwörd€ 😀 \\é \\\\é \u{fdd0}x\nk\u{e9}y=v\n";
        assert_eq!(
            pairs(text),
            vec![
                pair("secret", "pässwörd€ 😀 é \\é \u{fdd0}x", 1),
                pair("kéy", "v", 2),
            ]
        );
    }

    #[test]
    fn byte_order_mark_and_crlf() {
        assert_eq!(
            pairs("\u{feff}a=1\r\nb=2\r\n"),
            vec![pair("a", "1", 1), pair("b", "2", 2)]
        );
    }

    #[test]
    fn escapes_in_the_file_still_work() {
        assert_eq!(
            pairs("a=\\u00e9\\tb\nb=c\\:d\n"),
            vec![pair("a", "é\tb", 1), pair("b", "c:d", 2)]
        );
    }

    #[test]
    fn last_duplicate_wins_and_warns() {
        let props = parse("a=1\nb=2\na=3\na=4\n", Path::new("g.properties")).unwrap();
        assert_eq!(
            props.get("a").map(|p| (p.value.as_str(), p.line)),
            Some(("4", 4))
        );
        let warnings: Vec<String> = props.duplicates.iter().map(|w| w.to_string()).collect();
        assert_eq!(
            warnings,
            vec![
                "g.properties:3: duplicate key a: line 3 overrides line 1",
                "g.properties:4: duplicate key a: line 4 overrides line 3",
            ]
        );
    }

    #[test]
    fn bad_escape_is_a_problem_with_its_line() {
        let err = parse("a=1\nb=\\u12\n", Path::new("g.properties")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "g.properties:2: malformed \\uxxxx escape: not enough digits"
        );
    }
}
