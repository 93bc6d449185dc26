//! The manual page pg_standby(1) and the bash completion, generated from the
//! command line's own definition (src/cli.rs), so that the options are
//! documented in one place and can never drift from what the parser accepts.
//!
//!     cargo run --example man > pg_standby.1              # the manual page
//!     cargo run --example man -- --bash-completion > pg_standby
//!     cargo run --example man | man -l -                  # read it
//!
//! clap_mangen renders NAME and OPTIONS from the parser's definitions; the
//! other sections are written here. scripts/package ships both files;
//! tests/man.rs checks the page against the parser.

use std::io::Write;

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let out = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        [] => man_page(),
        ["--bash-completion"] => bash_completion(),
        _ => {
            eprintln!("usage: man [--bash-completion]");
            return std::process::ExitCode::from(2);
        }
    };
    match std::io::stdout().lock().write_all(&out) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("writing: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The bash completion script, for /usr/share/bash-completion/completions.
pub fn bash_completion() -> Vec<u8> {
    let mut cmd = pg_standby::command();
    let mut out = Vec::new();
    clap_complete::generate(clap_complete::Shell::Bash, &mut cmd, "pg_standby", &mut out);
    out
}

/// The manual page, in roff.
pub fn man_page() -> Vec<u8> {
    let cmd = pg_standby::command();
    let version = cmd.get_version().unwrap_or("").to_string();
    let man = clap_mangen::Man::new(cmd)
        .title("PG_STANDBY")
        .section("1")
        .source(format!("pg_standby {version}"))
        .manual("User Commands");
    let mut out = Vec::new();
    let render = |out: &mut Vec<u8>| -> std::io::Result<()> {
        man.render_title(out)?;
        out.extend_from_slice(NAME_SYNOPSIS_DESCRIPTION.as_bytes());
        man.render_options_section(out)?;
        out.extend_from_slice(REST.as_bytes());
        Ok(())
    };
    render(&mut out).expect("writing to a Vec cannot fail");
    out
}

const NAME_SYNOPSIS_DESCRIPTION: &str = r#".SH NAME
pg_standby \- a waiting restore_command for PostgreSQL 10 to 18 warm standbys
.SH SYNOPSIS
.B pg_standby
[\fIOPTION\fR]... \fIARCHIVELOCATION\fR \fINEXTWALFILE\fR \fIXLOGFILEPATH\fR [\fIRESTARTWALFILE\fR]
.br
.B pg_standby \-\-check
[\fB\-D\fR \fIDATADIR\fR] [\fB\-\-json\fR]
.SH DESCRIPTION
.B pg_standby
is the
.B restore_command
of a warm standby fed by WAL archiving, and a drop\-in replacement for the
pg_standby that PostgreSQL shipped until version 13: every pg_standby 13
command line keeps its meaning.
The server runs it for each file it needs, as
.RS
.B pg_standby
[\fIOPTION\fR]... \fIARCHIVELOCATION\fR %f %p %r
.RE
and pg_standby waits until the file is in the archive, checks it and puts it
at %p, or ends recovery (the standby is promoted) when a trigger file
appears.
.PP
It watches the archive with file events (inotify) instead of sleeping, so a
segment is handed over milliseconds after it lands and a failover starts the
moment the trigger file appears; without events (NFS) it checks every
\fB\-s\fR seconds.
Requests for timeline history files are answered at once.
.PP
It never hands PostgreSQL a partial, foreign or corrupt segment: each one is
checked against its own page header (size, the LSN its name implies,
timeline, the standby's system identifier from global/pg_control, the page
magic of PostgreSQL 10 to 18) and delivered by an atomic rename, so %p is
either absent or complete.
A segment that stays invalid stops recovery (exit 250) after
\fB\-\-bad\-file\-timeout\fR seconds instead of being skipped.
Errors never look like "file not available": a typo, a forgotten %p, an
unmounted archive or a full disk stops the standby instead of promoting it.
.PP
The archive may hold each file plain or compressed (%f.gz, %f.zst, %f.lz4,
%f.bz2, %f.xz, %f.lzma); the plain file wins when both exist, and a
compressed one is decompressed beside %p and checked like a plain one.
ARCHIVELOCATION may also be
\fBs3://\fIBUCKET\fR[\fB/\fIPREFIX\fR]
on AWS S3 or any S3\-compatible store, or
\fBgs://\fIBUCKET\fR[\fB/\fIPREFIX\fR]
on Google Cloud Storage, or
\fBazure://\fICONTAINER\fR[\fB/\fIPREFIX\fR]
on Azure Blob Storage, with the same waiting and the same
checks; object storage sends no events, so pg_standby polls it, more often
while a wait is young.
From compressed and object\-storage archives the next segments are fetched
ahead into a spool (see \fB\-\-prefetch\fR).
.PP
In standby mode (standby.signal in the server's working directory, or
standby_mode = on in recovery.conf) the server retries a failed
restore_command by itself and may stream from the primary, so pg_standby
does not wait there: it delivers the file if it is there and valid and
otherwise exits 1 at once (see \fB\-\-standby\-wait\fR).
A trigger file cannot end recovery in standby mode: use
.B pg_ctl promote
there.
When %p's file name equals %f the caller is
.B pg_rewind \-\-restore\-target\-wal
or a similar tool, and pg_standby does not wait either.
.PP
Each outcome is one line on standard error, which the server's log collects,
starting with a timestamp and pg_standby[PID].
.PP
.B pg_standby \-\-check
inspects a standby's data directory instead and reports each problem with
its fix (see \fB\-\-check\fR).
"#;

const REST: &str = r#".SH "EXIT STATUS"
.TP
.B 0
The file is at %p. PostgreSQL replays it.
.TP
.B 1
The file is not available, or a failover was asked for.
In archive recovery PostgreSQL ends recovery and promotes the standby; in
standby mode it tries again later.
With \fB\-\-check\fR: a problem that would break recovery or failover was
found.
.TP
.B 250
An error: bad arguments (a forgotten %p included), a missing archive, an
archive that vanished when a failover would skip past it, a segment that
stays invalid (foreign, corrupt, oversized, not a regular file), a copy that
still fails after its retries, object storage that refuses the credentials.
PostgreSQL stops recovery with FATAL instead of promoting: fix the cause (the
log line says what to do) and start the server again.
.TP
killed by SIGTERM
The server is shutting down.
.TP
killed by SIGINT
After SIGQUIT (an immediate shutdown): recovery is aborted.
.PP
PostgreSQL reads every exit status from 1 to 125 as "file not available",
which ends archive recovery and promotes the standby.
pg_standby 13 exited 2 or 3 on errors, so a typo in restore_command promoted
the standby; \fB\-\-legacy\-exit\-codes\fR brings those codes back.
.PP
SIGUSR1 (or SIGINT) sent to a waiting pg_standby asks for a fast failover.
.SH ENVIRONMENT
.TP
.B PGDATA
With \fB\-\-check\fR and no \fB\-D\fR: the data directory.
.TP
.BR AWS_ENDPOINT_URL_S3 ", " AWS_ENDPOINT_URL
For an s3:// archive: the endpoint of an S3\-compatible store (http:// is
allowed; such endpoints are addressed path\-style). Without one, AWS S3 of the
region.
.TP
.BR AWS_IGNORE_CONFIGURED_ENDPOINT_URLS
\fBtrue\fR ignores the endpoints above and the profile's endpoint_url.
.TP
.BR AWS_REGION ", " AWS_DEFAULT_REGION
The region (with a custom endpoint, us\-east\-1 when none is set).
.TP
.BR AWS_ACCESS_KEY_ID ", " AWS_SECRET_ACCESS_KEY ", " AWS_SESSION_TOKEN
The credentials. Without them, in this order: web identity, the profile's,
container credentials, instance metadata.
.TP
.BR AWS_WEB_IDENTITY_TOKEN_FILE ", " AWS_ROLE_ARN ", " AWS_ROLE_SESSION_NAME
Web identity (EKS IAM roles for service accounts): the token is exchanged at
STS for temporary credentials, again before they expire.
.TP
.BR AWS_ENDPOINT_URL_STS
The STS endpoint (default: AWS_ENDPOINT_URL, else the region's).
.TP
.BR AWS_CONTAINER_CREDENTIALS_RELATIVE_URI ", " AWS_CONTAINER_CREDENTIALS_FULL_URI
Container credentials (ECS; EKS Pod Identity), with
.BR AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE " or " AWS_CONTAINER_AUTHORIZATION_TOKEN .
.TP
.BR AWS_EC2_METADATA_DISABLED ", " AWS_EC2_METADATA_SERVICE_ENDPOINT
\fBtrue\fR turns off the EC2 instance metadata service (IMDSv2), the last
source of credentials; the other moves it.
.TP
.B AWS_PROFILE
The profile in the shared files (default: \fBdefault\fR).
.TP
.BR AWS_CONFIG_FILE ", " AWS_SHARED_CREDENTIALS_FILE
The shared files (default: ~/.aws/config and ~/.aws/credentials, under
.BR HOME ).
A profile may hold keys, a credential_process, or role_arn with
web_identity_token_file, source_profile or credential_source (the role is
assumed at STS).
.TP
.B AZURE_STORAGE_CONNECTION_STRING
For an azure:// archive: an Azure Storage connection string (AccountName,
AccountKey, SharedAccessSignature, BlobEndpoint, DefaultEndpointsProtocol,
EndpointSuffix, UseDevelopmentStorage=true); it overrides the variables below.
.TP
.BR AZURE_STORAGE_ACCOUNT ", " AZURE_STORAGE_SAS_TOKEN
The storage account, and a SAS token appended to every request (it wins over
a key).
.TP
.BR AZURE_STORAGE_KEY ", " AZURE_STORAGE_ACCESS_KEY
The account key (SharedKey); the second is WAL\-G's name.
.TP
.BR AZURE_STORAGE_BLOB_ENDPOINT
The blob endpoint (default: https://ACCOUNT.blob.core.windows.net; Azurite:
http://127.0.0.1:10000/devstoreaccount1).
.TP
.BR IDENTITY_ENDPOINT ", " IDENTITY_HEADER ", " AZURE_POD_IDENTITY_AUTHORITY_HOST ", " AZURE_CLIENT_ID
Without a connection string, SAS or key: a managed identity's token from App
Service's endpoint, else from the instance metadata service (the third moves
it); the last picks a user\-assigned identity.
.PP
The server runs restore_command through the shell with its own environment:
set these for the PostgreSQL service, or in the command itself
(AWS_PROFILE=standby /usr/bin/pg_standby ...).
The credentials need s3:ListBucket on the bucket and s3:GetObject (and
s3:DeleteObject for archive cleanup).
.TP
.B STORAGE_EMULATOR_HOST
For a gs:// archive: a Cloud Storage emulator (host:port over http, or a
URL); no credentials are sent unless the next variable is set.
.TP
.B GOOGLE_APPLICATION_CREDENTIALS
A service account key file (a signed JWT is exchanged for access tokens, again
before they expire) or gcloud's user credentials. Without it, in this order:
gcloud's application_default_credentials.json (in
.BR CLOUDSDK_CONFIG ,
default ~/.config/gcloud), then the metadata server of the machine.
.TP
.BR GCE_METADATA_HOST ", " NO_GCE_CHECK
The metadata server (default metadata.google.internal);
\fBtrue\fR turns it off.
.PP
The Cloud Storage credentials need storage.objects.get and
storage.objects.list (and storage.objects.delete for archive cleanup).
On Azure: read and list on the container (Storage Blob Data Reader), and
delete for archive cleanup.
.SH FILES
.TP
the trigger file (\fB\-t\fR)
Created by the administrator to fail over; removed by recovery_end_command.
.TP
.IR DATADIR .pg_standby\-spool
The prefetch spool beside the data directory (mode 0700, owned by the
server's OS user); removed by a failover, a fatal error or a shutdown.
.TP
global/pg_control, standby.signal, recovery.signal, recovery.conf
Read in the server's working directory (the data directory): the system
identifier segments must carry, and whether the server is in standby mode.
.TP
~/.aws/config, ~/.aws/credentials
Profiles for s3:// archives.
.TP
~/.config/gcloud/application_default_credentials.json
gcloud's credentials for gs:// archives.
.SH EXAMPLES
On the primary, archive each finished segment under a temporary name and
rename it:
.PP
.RS
.nf
archive_mode = on
archive_command = \(aqtest ! \-f /mnt/archive/%f && cp %p /mnt/archive/%f.tmp && mv /mnt/archive/%f.tmp /mnt/archive/%f\(aq
.fi
.RE
.PP
PostgreSQL 15 to 18: in postgresql.conf on the standby, with an empty
recovery.signal (not standby.signal) in its data directory:
.PP
.RS
.nf
restore_command = \(aq/usr/bin/pg_standby \-t /var/lib/postgresql/failover.trigger /mnt/archive %f %p %r\(aq
recovery_end_command = \(aqrm \-f /var/lib/postgresql/failover.trigger\(aq
recovery_prefetch = off
.fi
.RE
.PP
recovery_prefetch = off is required with any waiting restore_command: with
the default the server asks for the next segment before it has replayed the
current one, and the standby falls behind.
.PP
PostgreSQL 12 to 14: the same in postgresql.conf, without the
recovery_prefetch line, and an empty recovery.signal:
.PP
.RS
.nf
restore_command = \(aq/usr/bin/pg_standby \-t /var/lib/postgresql/failover.trigger /mnt/archive %f %p %r\(aq
recovery_end_command = \(aqrm \-f /var/lib/postgresql/failover.trigger\(aq
.fi
.RE
.PP
PostgreSQL 10 and 11: in recovery.conf in the standby's data directory,
without a standby_mode line:
.PP
.RS
.nf
restore_command = \(aq/usr/bin/pg_standby \-t /var/lib/postgresql/failover.trigger /mnt/archive %f %p %r\(aq
recovery_end_command = \(aqrm \-f /var/lib/postgresql/failover.trigger\(aq
recovery_target_timeline = \(aqlatest\(aq
.fi
.RE
.PP
Fail over, smart (restore what the archive holds, then promote) or fast:
.PP
.RS
.nf
touch /var/lib/postgresql/failover.trigger
echo fast > /var/lib/postgresql/failover.trigger
.fi
.RE
.PP
An archive in object storage, with the credentials of a profile:
.PP
.RS
.nf
restore_command = \(aqAWS_PROFILE=standby /usr/bin/pg_standby \-t /var/lib/postgresql/failover.trigger s3://wal\-archive/cluster1 %f %p %r\(aq
.fi
.RE
.PP
Check a standby's setup before starting it:
.PP
.RS
.nf
pg_standby \-\-check \-D /var/lib/postgresql/15/standby
.fi
.RE
.SH "SEE ALSO"
.BR pg_archivecleanup (1),
.BR pg_basebackup (1),
.BR pg_ctl (1),
.BR postgres (1),
.BR pg_rewind (1)
.PP
PostgreSQL's documentation: "Log\-Shipping Standby Servers" and
"Continuous Archiving and Point\-in\-Time Recovery".
.PP
The README, docs/guide.md (failover, compressed and object\-storage archives,
prefetch, monitoring, the log lines) and docs/reference.md (every difference
from pg_standby 13) in pg_standby's source.
"#;
