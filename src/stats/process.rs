//! This process's resident memory and CPU time, and any process's CPU time,
//! as Linux's `/proc` tells them.

/// Linux's `USER_HZ`: the unit of the CPU times in `/proc/<pid>/stat`
/// (100 on every architecture Linux exposes to user space this way).
pub const CLOCK_TICKS_PER_SEC: f64 = 100.0;

/// User plus system CPU time of this process, in clock ticks.
pub(super) fn cpu_ticks() -> Option<u64> {
    proc_cpu_ticks(&std::fs::read_to_string("/proc/self/stat").ok()?)
}

/// User plus system CPU time (`utime`, `stime`: the 14th and 15th fields)
/// of a `/proc/<pid>/stat` line, whose second field (the command, in
/// parentheses) may hold spaces.
pub fn proc_cpu_ticks(stat: &str) -> Option<u64> {
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// `VmRSS` of `/proc/self/status`, in bytes (Linux only).
pub(super) fn resident_memory_bytes() -> Option<i64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: i64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_is_read_from_a_stat_line_whatever_the_command() {
        let stat = "4242 (redis server) S 1 4242 4242 0 -1 4194560 1285 0 0 0 \
                    731 269 0 0 20 0 5 0 1234 0 0";
        assert_eq!(proc_cpu_ticks(stat), Some(1000));
        assert_eq!(proc_cpu_ticks("4242 (x) S 1"), None);
        assert_eq!(proc_cpu_ticks("no parenthesis"), None);
    }
}
