//! A reader for postgresql.conf-style files, following the server's lexer
//! (src/backend/utils/misc/guc-file.l) and ParseConfigFp/ParseConfigDirectory:
//! `name = value` or `name value`, `#` comments, values quoted with single
//! quotes (`''` and backslash escapes, as GUC_scanstr decodes them) or bare,
//! and the include, include_if_exists and include_dir directives, relative to
//! the including file's directory. Later settings win, as in the server.

use std::fs;
use std::path::{Path, PathBuf};

/// CONF_FILE_MAX_DEPTH in guc.h.
const MAX_DEPTH: usize = 10;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    /// Lowercased: GUC names are case-insensitive.
    pub name: String,
    pub value: String,
    pub file: PathBuf,
    pub line: usize,
}

/// Everything read from one top-level file and its includes, in the order the
/// server reads it.
#[derive(Debug, Default, Clone)]
pub struct Conf {
    pub settings: Vec<Setting>,
    /// Problems that make the server refuse to start: a syntax error, an
    /// include that cannot be read, includes nested too deep.
    pub problems: Vec<String>,
}

impl Conf {
    /// Read `path` (and what it includes), appending to this configuration.
    /// A missing top-level file is reported by the caller, not here.
    pub fn read_file(&mut self, path: &Path) {
        self.read(path, 0, false);
    }

    /// Parse `text` as if it were the file `path`.
    #[cfg(test)]
    pub fn read_str(&mut self, path: &Path, text: &str) {
        self.parse(path, text, 0);
    }

    /// The value that wins: the last one set.
    pub fn get(&self, name: &str) -> Option<&Setting> {
        let name = name.to_ascii_lowercase();
        self.settings.iter().rev().find(|s| s.name == name)
    }

    pub fn value(&self, name: &str) -> Option<&str> {
        self.get(name).map(|s| s.value.as_str())
    }

    fn read(&mut self, path: &Path, depth: usize, if_exists: bool) {
        if depth > MAX_DEPTH {
            self.problems.push(format!(
                "could not open configuration file \"{}\": maximum nesting depth exceeded",
                path.display()
            ));
            return;
        }
        match fs::read(path) {
            Ok(bytes) => self.parse(path, &String::from_utf8_lossy(&bytes), depth),
            Err(e) if if_exists && e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => self.problems.push(format!(
                "could not open configuration file \"{}\": {e}",
                path.display()
            )),
        }
    }

    fn read_dir(&mut self, dir: &Path, depth: usize) {
        let entries = match fs::read_dir(dir) {
            Ok(rd) => rd,
            Err(e) => {
                self.problems.push(format!(
                    "could not open configuration directory \"{}\": {e}",
                    dir.display()
                ));
                return;
            }
        };
        // ParseConfigDirectory: only "*.conf" files not starting with a dot,
        // in strcmp order of their names.
        let mut names: Vec<Vec<u8>> = entries
            .flatten()
            .filter(|e| e.file_type().map(|t| !t.is_dir()).unwrap_or(false))
            .map(|e| {
                use std::os::unix::ffi::OsStrExt;
                e.file_name().as_bytes().to_vec()
            })
            .filter(|n| n.ends_with(b".conf") && !n.starts_with(b"."))
            .collect();
        names.sort();
        for name in names {
            use std::os::unix::ffi::OsStrExt;
            let path = dir.join(std::ffi::OsStr::from_bytes(&name));
            self.read(&path, depth + 1, false);
        }
    }

    fn parse(&mut self, path: &Path, text: &str, depth: usize) {
        let base = path.parent().unwrap_or(Path::new("/")).to_path_buf();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            match parse_line(raw) {
                Ok(None) => {}
                Ok(Some((name, value))) => {
                    let target = || base.join(&value);
                    match name.as_str() {
                        "include" => self.read(&target(), depth + 1, false),
                        "include_if_exists" => self.read(&target(), depth + 1, true),
                        "include_dir" => self.read_dir(&target(), depth),
                        _ => self.settings.push(Setting {
                            name,
                            value,
                            file: path.to_path_buf(),
                            line,
                        }),
                    }
                }
                Err(e) => self.problems.push(format!(
                    "syntax error in file \"{}\" line {line}: {e}",
                    path.display()
                )),
            }
        }
    }
}

fn is_letter(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || !c.is_ascii()
}

fn is_letter_or_digit(c: char) -> bool {
    is_letter(c) || c.is_ascii_digit()
}

/// One line: `Ok(None)` for a blank or comment line.
fn parse_line(line: &str) -> Result<Option<(String, String)>, String> {
    let mut rest = line.trim_start();
    if rest.is_empty() || rest.starts_with('#') {
        return Ok(None);
    }
    // ID or QUALIFIED_ID (ID "." ID)
    let name_len = rest
        .char_indices()
        .find(|&(i, c)| {
            !(if i == 0 {
                is_letter(c)
            } else {
                is_letter_or_digit(c) || c == '.'
            })
        })
        .map_or(rest.len(), |(i, _)| i);
    if name_len == 0 {
        return Err(format!("near \"{}\"", rest.trim_end()));
    }
    let name = rest[..name_len].to_ascii_lowercase();
    rest = rest[name_len..].trim_start();
    if let Some(r) = rest.strip_prefix('=') {
        rest = r.trim_start();
    }
    let (value, after) = if let Some(quoted) = rest.strip_prefix('\'') {
        scan_quoted(quoted)?
    } else {
        // A bare value: an identifier, a number (with unit) or an unquoted
        // string of letters, digits and -._:/ (and + for reals).
        let len = rest
            .char_indices()
            .find(|&(_, c)| !(is_letter_or_digit(c) || "-._:/+".contains(c)))
            .map_or(rest.len(), |(i, _)| i);
        if len == 0 {
            return Err(format!("missing value for \"{name}\""));
        }
        (rest[..len].to_string(), &rest[len..])
    };
    let after = after.trim_start();
    if !(after.is_empty() || after.starts_with('#')) {
        return Err(format!("near \"{}\"", after.trim_end()));
    }
    Ok(Some((name, value)))
}

/// The inside of a quoted value (after its opening quote), decoded as
/// GUC_scanstr does; returns the value and what follows the closing quote.
fn scan_quoted(s: &str) -> Result<(String, &str), String> {
    let mut out = String::new();
    let mut chars = s.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '\'' => {
                if let Some(&(_, '\'')) = chars.peek() {
                    chars.next();
                    out.push('\'');
                } else {
                    return Ok((out, &s[i + 1..]));
                }
            }
            '\\' => {
                let Some((_, e)) = chars.next() else { break };
                match e {
                    'b' => out.push('\u{8}'),
                    'f' => out.push('\u{c}'),
                    'n' => out.push('\n'),
                    'r' => out.push('\r'),
                    't' => out.push('\t'),
                    '0'..='7' => {
                        let mut v = e.to_digit(8).unwrap_or(0);
                        for _ in 0..2 {
                            match chars.peek() {
                                Some(&(_, d @ '0'..='7')) => {
                                    v = v * 8 + d.to_digit(8).unwrap_or(0);
                                    chars.next();
                                }
                                _ => break,
                            }
                        }
                        out.push(char::from_u32(v & 0xFF).unwrap_or('?'));
                    }
                    other => out.push(other),
                }
            }
            c => out.push(c),
        }
    }
    Err("unterminated quoted string".to_string())
}

/// A GUC boolean as parse_bool reads it: on/off, true/false, yes/no, 1/0
/// and unique prefixes of them.
pub fn parse_bool(value: &str) -> Option<bool> {
    let v = value.trim().to_ascii_lowercase();
    if v.is_empty() {
        return None;
    }
    let prefix_of = |word: &str, min: usize| v.len() >= min && word.starts_with(v.as_str());
    if prefix_of("true", 1) || prefix_of("yes", 1) || prefix_of("on", 2) || v == "1" {
        Some(true)
    } else if prefix_of("false", 1) || prefix_of("no", 1) || prefix_of("off", 2) || v == "0" {
        Some(false)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(text: &str) -> Conf {
        let mut c = Conf::default();
        c.read_str(Path::new("/nonexistent/postgresql.conf"), text);
        c
    }

    #[test]
    fn quoting_and_comments() {
        let c = conf(
            "# a comment\n\
             restore_command = 'pg_standby -t ''/tmp/x y'' /a %f %p'  # trailing\n\
             Archive_Cleanup_Command 'a\\tb\\\\c\\'d'\n\
             port=5433\n\
             recovery_prefetch = off#no space\n\
             search_path = '\"$user\", public'\n\
             empty = ''\n\
             escaped = 'oct\\101'\n",
        );
        assert!(c.problems.is_empty(), "{:?}", c.problems);
        assert_eq!(
            c.value("restore_command"),
            Some("pg_standby -t '/tmp/x y' /a %f %p")
        );
        assert_eq!(c.value("archive_cleanup_command"), Some("a\tb\\c'd"));
        assert_eq!(c.value("PORT"), Some("5433"));
        assert_eq!(c.value("recovery_prefetch"), Some("off"));
        assert_eq!(c.value("search_path"), Some("\"$user\", public"));
        assert_eq!(c.value("empty"), Some(""));
        assert_eq!(c.value("escaped"), Some("octA"));
        assert_eq!(c.get("port").unwrap().line, 4);
    }

    #[test]
    fn syntax_errors_are_reported_with_file_and_line() {
        let c = conf("ok = 1\nbad = 'unterminated\n= 3\nx = 1 2\n");
        assert_eq!(c.problems.len(), 3, "{:?}", c.problems);
        assert!(c.problems[0].contains("line 2"));
        assert!(c.problems[2].contains("line 4"));
        assert_eq!(c.value("ok"), Some("1"));
    }

    #[test]
    fn later_settings_win_and_includes_are_read_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        fs::write(
            d.join("postgresql.conf"),
            "a = 1\nb = 1\ninclude 'inc.conf'\nb = 3\ninclude_if_exists = 'missing.conf'\n\
             include_dir 'conf.d'\n",
        )
        .unwrap();
        fs::write(d.join("inc.conf"), "a = 2\nb = 2\nc = 2\n").unwrap();
        fs::create_dir(d.join("conf.d")).unwrap();
        // strcmp order: "10-x.conf" < "9-x.conf" < "a.conf"; dot files and
        // other suffixes are skipped.
        fs::write(d.join("conf.d/9-x.conf"), "c = nine\n").unwrap();
        fs::write(d.join("conf.d/10-x.conf"), "c = ten\nd = ten\n").unwrap();
        fs::write(d.join("conf.d/a.conf"), "d = a\n").unwrap();
        fs::write(d.join("conf.d/.hidden.conf"), "c = hidden\n").unwrap();
        fs::write(d.join("conf.d/z.conf.bak"), "c = bak\n").unwrap();
        let mut c = Conf::default();
        c.read_file(&d.join("postgresql.conf"));
        assert!(c.problems.is_empty(), "{:?}", c.problems);
        assert_eq!(c.value("a"), Some("2"));
        assert_eq!(c.value("b"), Some("3"));
        assert_eq!(c.value("c"), Some("nine"));
        assert_eq!(c.value("d"), Some("a"));
        assert_eq!(c.get("a").unwrap().file, d.join("inc.conf"));
        // postgresql.auto.conf is read after postgresql.conf and wins.
        fs::write(d.join("postgresql.auto.conf"), "a = auto\n").unwrap();
        c.read_file(&d.join("postgresql.auto.conf"));
        assert_eq!(c.value("a"), Some("auto"));
    }

    #[test]
    fn missing_includes_and_loops_are_problems() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        fs::write(
            d.join("main.conf"),
            "include 'nothere.conf'\ninclude_dir 'nodir'\n",
        )
        .unwrap();
        fs::write(d.join("loop.conf"), "include 'loop.conf'\n").unwrap();
        let mut c = Conf::default();
        c.read_file(&d.join("main.conf"));
        assert_eq!(c.problems.len(), 2, "{:?}", c.problems);
        let mut c = Conf::default();
        c.read_file(&d.join("loop.conf"));
        assert_eq!(c.problems.len(), 1);
        assert!(c.problems[0].contains("depth"));
    }

    #[test]
    fn booleans() {
        for v in ["on", "ON", "true", "t", "yes", "1"] {
            assert_eq!(parse_bool(v), Some(true), "{v}");
        }
        for v in ["off", "of", "false", "f", "no", "0"] {
            assert_eq!(parse_bool(v), Some(false), "{v}");
        }
        for v in ["o", "try", ""] {
            assert_eq!(parse_bool(v), None, "{v}");
        }
    }
}
