//! Decompression time of one compressed segment: `pg_standby::codec` vs
//! the command-line tool a restore_command would run.
//!
//! `cargo run --release --example codec_bench -- [RUNS] FILE.gz FILE.zst ...`
//!
//! Each file's codec comes from its suffix. Per run, the two contenders
//! alternate (the machine is shared and noisy), each writing a new file in
//! the system temporary directory: the library through `decompress_to`
//! (with a stop check as the real caller passes), the tool as its own
//! process with stdout redirected to the file (`gzip -dc`, `zstd -dcq`,
//! `lz4 -dc`, `bzip2 -dc`, `xz -dc`; no shell). Prints min and median,
//! and the library decoding into nothing (the cost of the codec alone).

use anyhow::{Context, Result, bail};
use pg_standby::codec::{Codec, decompress_to};
use std::fs::File;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

static STOP: AtomicBool = AtomicBool::new(false);

fn main() -> Result<()> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let runs = match args.first().map(|a| a.parse::<usize>()) {
        Some(Ok(n)) => {
            args.remove(0);
            n
        }
        _ => 15,
    };
    if args.is_empty() {
        bail!("usage: codec_bench [RUNS] FILE.{{gz,zst,lz4,bz2,xz,lzma}}...");
    }
    let out_dir = tempfile::tempdir()?;
    let out = out_dir.path().join("out");
    println!(
        "| file | codec | library, no output (ms) | library min / median (ms) | tool min / median (ms) | tool |"
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    for file in &args {
        let path = Path::new(file);
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or(file);
        let (codec, _) =
            Codec::split_name(name).with_context(|| format!("{file}: no known suffix"))?;
        let tool: &[&str] = match codec.name() {
            "gzip" => &["gzip", "-dc"],
            "zstd" => &["zstd", "-dcq"],
            "lz4" => &["lz4", "-dc"],
            "bzip2" => &["bzip2", "-dc"],
            "xz" => &["xz", "-dc"],
            "lzma" => &["xz", "--format=lzma", "-dc"],
            other => bail!("no tool for {other}"),
        };
        let mut sink = Vec::new();
        let mut lib = Vec::new();
        let mut cli = Vec::new();
        let mut size = None;
        for _ in 0..runs {
            let started = Instant::now();
            decompress_to(
                codec,
                File::open(path)?,
                &mut std::io::sink(),
                1 << 30,
                &|| STOP.load(Ordering::Relaxed),
            )
            .with_context(|| file.clone())?;
            sink.push(started.elapsed());

            let started = Instant::now();
            let src = File::open(path)?;
            let mut dst = File::create(&out)?;
            let n = decompress_to(codec, &src, &mut dst, 1 << 30, &|| {
                STOP.load(Ordering::Relaxed)
            })
            .with_context(|| file.clone())?;
            drop(dst);
            lib.push(started.elapsed());
            size.get_or_insert(n);

            let started = Instant::now();
            let status = Command::new(tool[0])
                .args(&tool[1..])
                .arg(path)
                .stdout(File::create(&out)?)
                .status()?;
            cli.push(started.elapsed());
            if !status.success() || std::fs::metadata(&out)?.len() != n {
                bail!("{} failed on {file}", tool.join(" "));
            }
        }
        println!(
            "| {name} ({} B -> {} B) | {codec} | {} | {} | {} | `{} {name} > out` |",
            std::fs::metadata(path)?.len(),
            size.unwrap_or(0),
            stats(&mut sink),
            stats(&mut lib),
            stats(&mut cli),
            tool.join(" ")
        );
    }
    Ok(())
}

fn stats(samples: &mut [Duration]) -> String {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    format!(
        "{:.1} / {:.1}",
        ms(samples[0]),
        ms(samples[samples.len() / 2])
    )
}
