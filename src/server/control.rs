//! The few fields of `global/pg_control` the checker needs. ControlFileData
//! (src/include/catalog/pg_control.h) changes its layout between majors, so
//! fields after the fixed prefix are found by a landmark instead of per-version
//! offsets: `floatFormat`, the double FLOATFORMAT_VALUE (1234567.0), is
//! followed in every release 10-18 by blcksz, relseg_size, xlog_blcksz and
//! xlog_seg_size (uint32 each).

use std::fs;
use std::io;
use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::wal::is_valid_segment_size;

/// PG_CONTROL_VERSION of PostgreSQL 10; 11 removed `prevCheckPoint`.
const PG10_CONTROL_VERSION: u32 = 1002;
const FLOATFORMAT_VALUE: f64 = 1_234_567.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Control {
    pub system_identifier: u64,
    pub control_version: u32,
    /// checkPointCopy.redo: where the next start of recovery begins.
    pub redo: u64,
    /// checkPointCopy.ThisTimeLineID.
    pub timeline: u32,
    pub wal_segment_size: u64,
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

impl Control {
    pub fn read(datadir: &Path) -> Result<Self> {
        let path = datadir.join("global").join("pg_control");
        let bytes = fs::read(&path).with_context(|| format!("read {}", path.display()))?;
        Self::parse(&bytes).with_context(|| format!("parse {}", path.display()))
    }

    pub fn parse(b: &[u8]) -> Result<Self> {
        let short = || io::Error::from(io::ErrorKind::UnexpectedEof);
        let system_identifier = u64_at(b, 0).ok_or_else(short)?;
        let control_version = u32_at(b, 8).ok_or_else(short)?;
        // system_identifier, pg_control_version, catalog_version_no, state
        // (+4 padding), time, checkPoint: checkPointCopy follows, after
        // prevCheckPoint on 10. CheckPoint starts with redo, ThisTimeLineID.
        let copy = if control_version <= PG10_CONTROL_VERSION {
            48
        } else {
            40
        };
        let redo = u64_at(b, copy).ok_or_else(short)?;
        let timeline = u32_at(b, copy + 8).ok_or_else(short)?;
        let landmark = FLOATFORMAT_VALUE.to_ne_bytes();
        // Doubles are 8-aligned in the struct.
        let Some(float_at) = (0..b.len().saturating_sub(8))
            .step_by(8)
            .find(|&i| b[i..i + 8] == landmark)
        else {
            bail!("no floatFormat landmark: not a pg_control file of this machine's byte order");
        };
        let xlog_blcksz = u32_at(b, float_at + 16).ok_or_else(short)?;
        let seg_size = u32_at(b, float_at + 20).ok_or_else(short)?;
        if !xlog_blcksz.is_power_of_two() || !is_valid_segment_size(u64::from(seg_size)) {
            bail!("implausible WAL block size {xlog_blcksz} or segment size {seg_size}");
        }
        Ok(Self {
            system_identifier,
            control_version,
            redo,
            timeline,
            wal_segment_size: u64::from(seg_size),
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A pg_control image with the fields we read at their places (the rest
    /// zero), in the 11+ layout or, with `pg10`, the 10 one.
    pub(crate) fn image(sysid: u64, redo: u64, tli: u32, seg_size: u32, pg10: bool) -> Vec<u8> {
        let mut b = vec![0u8; 8192];
        b[0..8].copy_from_slice(&sysid.to_ne_bytes());
        let version: u32 = if pg10 { 1002 } else { 1300 };
        b[8..12].copy_from_slice(&version.to_ne_bytes());
        let copy = if pg10 { 48 } else { 40 };
        b[copy..copy + 8].copy_from_slice(&redo.to_ne_bytes());
        b[copy + 8..copy + 12].copy_from_slice(&tli.to_ne_bytes());
        let f = 200;
        b[f..f + 8].copy_from_slice(&FLOATFORMAT_VALUE.to_ne_bytes());
        b[f + 8..f + 12].copy_from_slice(&8192u32.to_ne_bytes());
        b[f + 16..f + 20].copy_from_slice(&8192u32.to_ne_bytes());
        b[f + 20..f + 24].copy_from_slice(&seg_size.to_ne_bytes());
        b
    }

    #[test]
    fn reads_both_layouts() {
        for pg10 in [false, true] {
            let c = Control::parse(&image(42, 0x1_0200_0028, 3, 16 << 20, pg10)).unwrap();
            assert_eq!(
                (c.system_identifier, c.redo, c.timeline, c.wal_segment_size),
                (42, 0x1_0200_0028, 3, 16 << 20)
            );
        }
    }

    #[test]
    fn rejects_garbage() {
        assert!(Control::parse(&[0u8; 16]).is_err());
        assert!(Control::parse(&vec![0u8; 8192]).is_err());
        assert!(Control::parse(&image(1, 0, 1, 12345, false)).is_err());
    }
}
