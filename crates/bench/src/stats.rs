//! What every benchmark counts with: the disk's fsync latency, percentiles, medians.

use std::io::Write as _;
use std::path::Path;
use std::time::Instant;

/// p50 and p99 of 4 KiB append + fdatasync on the bench directory's filesystem, in ms.
pub(crate) fn fsync_probe(dir: &Path) -> anyhow::Result<(f64, f64)> {
    let path = dir.join("fsync-probe");
    let mut f = std::fs::File::create(&path)?;
    let block = vec![7u8; 4096];
    let mut lat = Vec::new();
    for _ in 0..500 {
        let t = Instant::now();
        f.write_all(&block)?;
        f.sync_data()?;
        lat.push(t.elapsed().as_micros() as u32);
    }
    drop(f);
    std::fs::remove_file(&path)?;
    Ok(p50_p99(&mut lat))
}

/// Sort µs samples and give their p50 and p99, in ms.
pub(crate) fn p50_p99(samples: &mut [u32]) -> (f64, f64) {
    samples.sort_unstable();
    (pct(samples, 50.0), pct(samples, 99.0))
}

/// Percentile of sorted µs samples, in ms.
pub(crate) fn pct(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    f64::from(sorted[i]) / 1000.0
}

pub(crate) fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}
