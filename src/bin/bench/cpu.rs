//! Where the CPU went during a scenario, in percent of all cores: the
//! service, the bench itself, the Postgres backends serving the bench
//! database, and everything else (Postgres' own background work, and
//! whatever else runs on the machine: compilers, other test suites).

use std::collections::HashMap;

use serde_json::Value;

use crate::Report;

#[derive(Debug, Clone)]
pub(crate) struct Snapshot {
    total: u64,
    idle: u64,
    service: u64,
    bench: u64,
    backends: HashMap<u32, u64>,
}

fn process_ticks(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start at `state`.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Postgres backends show their database in their process title
/// (`postgres: user database host(port) state`).
fn backends(database: &str) -> HashMap<u32, u64> {
    let mut found = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return found;
    };
    let needle = format!(" {database} ");
    for entry in dir.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let title = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if !(title.starts_with("postgres:") && title.contains(&needle)) {
            continue;
        }
        if let Some(ticks) = process_ticks(&pid.to_string()) {
            found.insert(pid, ticks);
        }
    }
    found
}

/// Ticks so far (all in USER_HZ, so only ratios matter).
pub(crate) fn snapshot(service_pid: u32, database: &str) -> Option<Snapshot> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let cpu: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    if cpu.len() < 5 {
        return None;
    }
    Some(Snapshot {
        total: cpu.iter().sum(),
        idle: cpu[3] + cpu[4],
        service: process_ticks(&service_pid.to_string())?,
        bench: process_ticks("self")?,
        backends: backends(database),
    })
}

/// Add `<prefix>_cpu_{service,bench,postgres,other,idle}_pct` to the report.
/// Backends that exited during the interval are missed (counted as other).
pub(crate) fn record(
    report: &mut Report,
    prefix: &str,
    before: Option<Snapshot>,
    after: Option<Snapshot>,
) {
    let (Some(a), Some(b)) = (before, after) else {
        return;
    };
    let total = b.total.saturating_sub(a.total).max(1) as f64;
    let idle = b.idle.saturating_sub(a.idle) as f64;
    let service = b.service.saturating_sub(a.service) as f64;
    let bench = b.bench.saturating_sub(a.bench) as f64;
    let postgres: u64 = b
        .backends
        .iter()
        .map(|(pid, ticks)| ticks.saturating_sub(a.backends.get(pid).copied().unwrap_or(0)))
        .sum();
    let postgres = postgres as f64;
    let other = (total - idle - service - bench - postgres).max(0.0);
    for (name, ticks) in [
        ("service", service),
        ("bench", bench),
        ("postgres", postgres),
        ("other", other),
        ("idle", idle),
    ] {
        report.info(
            &format!("{prefix}_cpu_{name}_pct"),
            Value::from(100.0 * ticks / total),
        );
    }
}
