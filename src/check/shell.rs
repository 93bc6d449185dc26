//! Splitting a restore_command into words as /bin/sh would for a simple
//! command: blanks separate words, single quotes keep everything, double
//! quotes keep everything but `\` before `$`, `` ` ``, `"`, `\` and newline,
//! and an unquoted backslash quotes the next character. Redirections
//! (`2>>standby.log`, as pg_standby 13's documentation shows) are dropped with
//! their target. Anything else beyond a simple command (`;`, `|`, `&`, `(`,
//! `$` expansions, ...) ends the split: the caller is told, and judges the
//! first command only.

#[derive(Debug, PartialEq, Eq)]
pub struct Split {
    pub words: Vec<String>,
    /// An unquoted shell operator or expansion was met (the rest is not a
    /// plain argument list).
    pub complex: bool,
}

pub fn split(command: &str) -> Result<Split, String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = command.chars().peekable();
    let mut complex = false;
    // The next word is a redirection's target, not an argument.
    let mut redirect = false;
    let mut finish = |word: &mut Option<String>, redirect: &mut bool| {
        if let Some(w) = word.take()
            && !std::mem::take(redirect)
        {
            words.push(w);
        }
    };
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\n' => finish(&mut word, &mut redirect),
            '<' | '>' => {
                // An all-digit word glued to the operator is its fd number.
                if word
                    .as_deref()
                    .is_some_and(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_digit()))
                {
                    word = None;
                } else {
                    finish(&mut word, &mut redirect);
                }
                while let Some('<' | '>' | '&' | '|') = chars.peek() {
                    chars.next();
                }
                redirect = true;
            }
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => w.push(c),
                        None => return Err("unterminated single quote".into()),
                    }
                }
            }
            '"' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(e @ ('$' | '`' | '"' | '\\')) => w.push(e),
                            Some('\n') => {}
                            Some(e) => {
                                w.push('\\');
                                w.push(e);
                            }
                            None => return Err("unterminated double quote".into()),
                        },
                        Some('$' | '`') => complex = true,
                        Some(c) => w.push(c),
                        None => return Err("unterminated double quote".into()),
                    }
                }
            }
            '\\' => match chars.next() {
                Some('\n') => {}
                Some(e) => word.get_or_insert_with(String::new).push(e),
                None => word.get_or_insert_with(String::new).push('\\'),
            },
            ';' | '|' | '&' | '(' | ')' | '$' | '`' => {
                complex = true;
                break;
            }
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    finish(&mut word, &mut redirect);
    if redirect {
        return Err("a redirection without a target".into());
    }
    Ok(Split { words, complex })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        split(s).unwrap().words
    }

    #[test]
    fn quoting_as_sh() {
        assert_eq!(words("a  b\tc"), ["a", "b", "c"]);
        assert_eq!(words("'a b' \"c d\" e\\ f"), ["a b", "c d", "e f"]);
        assert_eq!(words("x'y'\"z\""), ["xyz"]);
        assert_eq!(words("\"a\\\"b\\n\""), ["a\"b\\n"]);
        assert_eq!(words("''"), [""]);
        assert!(split("'open").is_err());
        assert!(split("\"open").is_err());
    }

    #[test]
    fn operators_end_the_simple_command() {
        let s = split("pg_standby /a %f %p; echo done").unwrap();
        assert!(s.complex);
        assert_eq!(s.words, ["pg_standby", "/a", "%f", "%p"]);
        assert!(split("x $HOME").unwrap().complex);
        assert!(!split("x 'a;b'").unwrap().complex);
    }

    #[test]
    fn redirections_are_not_arguments() {
        let s = split("pg_standby -d /a %f %p %r 2>>standby.log").unwrap();
        assert_eq!(s.words, ["pg_standby", "-d", "/a", "%f", "%p", "%r"]);
        assert!(!s.complex);
        assert_eq!(words("a >'x y' b 2>&1 c"), ["a", "b", "c"]);
        assert_eq!(words("a </dev/null b"), ["a", "b"]);
        assert_eq!(words("a x2> f"), ["a", "x2"]);
        assert!(split("a >").is_err());
    }
}
