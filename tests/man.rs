//! The manual page and the bash completion (examples/man.rs) against the
//! parser they are generated from: every option the parser accepts is
//! documented, every AWS_* variable the object-storage client reads is in
//! ENVIRONMENT, and the page has the sections a manual page needs. Its
//! formatting is checked where it is installed: scripts/test-package runs
//! `man --warnings` and lintian on the packaged page.

#[path = "../examples/man.rs"]
#[allow(dead_code)] // its main() is the example's
mod man;

use std::process::{Command, Stdio};

fn page() -> String {
    String::from_utf8(man::man_page()).expect("the page is UTF-8")
}

/// What roff turns `-` into in option names.
fn roff(s: &str) -> String {
    s.replace('-', "\\-")
}

/// The options a user can give: everything but the hidden internal entry
/// points of the fetcher and the cleanup, and the ignored extra arguments.
fn user_arguments() -> Vec<clap::Arg> {
    pg_standby::command()
        .get_arguments()
        .filter(|a| !a.is_hide_set() && a.get_id() != "extra")
        .cloned()
        .collect()
}

#[test]
fn the_page_documents_every_option_the_parser_accepts() {
    let page = page();
    let options = &page[page.find(".SH OPTIONS").expect("an OPTIONS section")..];
    let mut seen = 0;
    for arg in user_arguments() {
        if let Some(short) = arg.get_short() {
            assert!(
                options.contains(&format!("\\fB\\-{short}\\fR")),
                "-{short} is not in OPTIONS"
            );
            seen += 1;
        }
        if let Some(long) = arg.get_long() {
            assert!(
                options.contains(&format!("\\fB\\-\\-{}\\fR", roff(long))),
                "--{long} is not in OPTIONS"
            );
            seen += 1;
        }
        if arg.is_positional() {
            let name = arg.get_value_names().expect("a value name")[0].as_str();
            assert!(options.contains(name), "{name} is not in OPTIONS");
        }
    }
    // -c -d -k -l -r -s -t -w -n -D -? -V and the long ones: a parser that
    // lost its options would make the loop above vacuous.
    assert!(seen >= 30, "only {seen} option names");
    // The internal entry points stay out of the user's manual.
    for internal in ["prefetch-worker", "cleanup-before", "cleanup-cluster"] {
        assert!(!page.contains(&roff(internal)), "{internal} is documented");
    }
}

#[test]
fn the_page_has_every_section_of_a_manual_page() {
    let page = page();
    let mut at = 0;
    for section in [
        ".TH PG_STANDBY 1",
        ".SH NAME",
        ".SH SYNOPSIS",
        ".SH DESCRIPTION",
        ".SH OPTIONS",
        ".SH \"EXIT STATUS\"",
        ".SH ENVIRONMENT",
        ".SH FILES",
        ".SH EXAMPLES",
        ".SH \"SEE ALSO\"",
    ] {
        let found = page[at..]
            .find(section)
            .unwrap_or_else(|| panic!("{section} missing or out of order"));
        at += found + section.len();
    }
    assert!(page.contains(&format!("\"pg_standby {}\"", env!("CARGO_PKG_VERSION"))));
    // The three setups of the README: 15-18, 12-14 (recovery.signal), 10-11
    // (recovery.conf).
    assert!(page.contains("recovery_prefetch = off"));
    assert!(page.contains("recovery.conf in the standby"));
    assert!(
        page.matches("restore_command = \\(aq/usr/bin/pg_standby")
            .count()
            >= 3
    );
}

/// Every AWS_*, AZURE_* and IDENTITY_* variable the object-storage clients
/// read (src/archive/store/s3.rs, src/archive/store/aws_credentials.rs, src/archive/store/azure.rs
/// outside their tests) is in ENVIRONMENT.
#[test]
fn the_page_documents_every_environment_variable_read() {
    let page = page();
    let env_section = &page[page.find(".SH ENVIRONMENT").unwrap()..page.find(".SH FILES").unwrap()];
    let code: String = [
        "src/archive/store/s3.rs",
        "src/archive/store/aws_credentials.rs",
        "src/archive/store/azure.rs",
    ]
    .iter()
    .map(|f| {
        let source = std::fs::read_to_string(format!("{}/{f}", env!("CARGO_MANIFEST_DIR")))
            .unwrap_or_else(|e| panic!("reading {f}: {e}"));
        source.split("#[cfg(test)]").next().unwrap().to_string()
    })
    .collect();
    let mut read = Vec::new();
    // Every string literal that is a whole AWS_* name: the variables are
    // read by name (`var("AWS_REGION")`, `file_of("AWS_CONFIG_FILE", ..)`).
    for prefix in ["AWS_", "AZURE_", "IDENTITY_"] {
        for piece in code.split(&format!("\"{prefix}")).skip(1) {
            let rest: String = piece
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            let name = format!("{prefix}{rest}");
            if piece[rest.len()..].starts_with('"') && !read.contains(&name) {
                read.push(name);
            }
        }
    }
    assert!(read.len() >= 30, "found only {read:?}");
    for name in read {
        assert!(
            env_section.contains(&name),
            "{name} is read but not in ENVIRONMENT"
        );
    }
    assert!(env_section.contains("PGDATA"));
    // And every variable the Cloud Storage store reads (src/archive/store/gcs.rs).
    let source = std::fs::read_to_string(format!(
        "{}/src/archive/store/gcs.rs",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let code = source.split("#[cfg(test)]").next().unwrap();
    let read: Vec<&str> = code
        .split('"')
        .skip(1)
        .step_by(2)
        .filter(|w| {
            w.len() > 3
                && w.contains('_')
                && !w.starts_with("CARGO_")
                && w.bytes()
                    .all(|b| b.is_ascii_uppercase() || b == b'_' || b.is_ascii_digit())
        })
        .collect();
    assert!(read.len() >= 5, "found only {read:?}");
    for name in read {
        assert!(
            env_section.contains(name),
            "{name} is read but not in ENVIRONMENT"
        );
    }
}

#[test]
fn the_bash_completion_knows_every_long_option_and_is_valid_bash() {
    let script = String::from_utf8(man::bash_completion()).unwrap();
    for arg in user_arguments() {
        if let Some(long) = arg.get_long() {
            assert!(
                script.contains(&format!("--{long}")),
                "--{long} not completed"
            );
        }
    }
    let Ok(mut child) = Command::new("bash")
        .arg("-n")
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    else {
        panic!("bash is needed to check the completion script");
    };
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "bash -n: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
