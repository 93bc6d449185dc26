//! A finding (severity, code, message, fix) and the two ways it is
//! printed: text for a terminal, JSON for a script.

use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Error,
    Warning,
    /// Something the checker could not judge (not an error, not a warning).
    Note,
    /// A check that was made and found nothing: what "0 errors" rests on.
    Passed,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Error => "error",
            Self::Warning => "warning",
            Self::Note => "note",
            Self::Passed => "ok",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub severity: Severity,
    pub code: &'static str,
    pub message: String,
    pub fix: String,
}

pub(super) fn finding(
    severity: Severity,
    code: &'static str,
    message: String,
    fix: String,
) -> Finding {
    Finding {
        severity,
        code,
        message,
        fix,
    }
}

/// A check passed: `code` names the check, `message` what was seen.
pub(super) fn ok(code: &'static str, message: String) -> Finding {
    finding(Severity::Passed, code, message, String::new())
}

/// Whether the findings pushed since `before` are only checks passed.
pub(super) fn clean_since(out: &[Finding], before: usize) -> bool {
    out[before..].iter().all(|f| f.severity == Severity::Passed)
}

pub fn exit_status(findings: &[Finding]) -> u8 {
    u8::from(findings.iter().any(|f| f.severity == Severity::Error))
}

pub fn to_text(datadir: &Path, findings: &[Finding]) -> String {
    let mut out = String::new();
    for f in findings {
        let label = match f.severity {
            Severity::Error => "ERROR",
            Severity::Warning => "WARNING",
            Severity::Note => "NOTE",
            Severity::Passed => "ok",
        };
        let _ = writeln!(out, "{label}: {} [{}]", f.message, f.code);
        if !f.fix.is_empty() {
            let _ = writeln!(out, "    fix: {}", f.fix);
        }
    }
    let count = |s| findings.iter().filter(|f| f.severity == s).count();
    let (errors, warnings) = (count(Severity::Error), count(Severity::Warning));
    let _ = writeln!(
        out,
        "{}: {errors} error(s), {warnings} warning(s), {} check(s) passed{}",
        datadir.display(),
        count(Severity::Passed),
        if errors == 0 {
            if warnings == 0 {
                ": the setup looks right"
            } else {
                ": recovery and failover should work"
            }
        } else {
            ": recovery or failover would fail"
        }
    );
    out
}

pub(super) fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A JSON array of `{"severity","code","message","fix"}` objects; the
/// checks passed have severity `ok` and an empty fix.
pub fn to_json(findings: &[Finding]) -> String {
    let items: Vec<String> = findings
        .iter()
        .map(|f| {
            format!(
                "{{\"severity\":{},\"code\":{},\"message\":{},\"fix\":{}}}",
                json_string(f.severity.as_str()),
                json_string(f.code),
                json_string(&f.message),
                json_string(&f.fix)
            )
        })
        .collect();
    format!("[{}]\n", items.join(",\n "))
}
