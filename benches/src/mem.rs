//! Memory figures of the running process, read from `/proc/self/status` (Linux).
//!
//! `VmRSS` is the resident set now, `VmHWM` its high-water mark ("peak"). Both are in kB
//! (KiB) in the file; the functions here return bytes.

/// The value of a `Name:   1234 kB` line of a `/proc/<pid>/status` text, in bytes.
pub fn status_field_bytes(status: &str, field: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        let mut parts = rest.split_whitespace();
        let value: u64 = parts.next()?.parse().ok()?;
        match parts.next() {
            Some("kB") => value.checked_mul(1024),
            None => Some(value),
            Some(_) => None,
        }
    })
}

fn read_field(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status_field_bytes(&status, field)
}

/// The resident set size of this process now (`VmRSS`), in bytes; `None` off Linux.
pub fn rss_bytes() -> Option<u64> {
    read_field("VmRSS")
}

/// The peak resident set size of this process (`VmHWM`), in bytes; `None` off Linux.
pub fn peak_rss_bytes() -> Option<u64> {
    read_field("VmHWM")
}

/// The user + system CPU time of a `/proc/<pid>/stat` line, in clock ticks (fields 14 and 15;
/// the command name in parentheses may hold spaces, so fields are counted after its `)`).
pub fn stat_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// The CPU time this process has used so far (user + system, all threads), in nanoseconds, at
/// the kernel's 100 Hz clock-tick resolution (10 ms); `None` off Linux.
pub fn cpu_time_ns() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    stat_cpu_ticks(&stat)?.checked_mul(10_000_000)
}

/// Bytes as MiB with one decimal, for progress lines.
pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_fields_are_read_in_bytes() {
        let status = "Name:\tx\nVmHWM:\t  20480 kB\nVmRSS:\t   10240 kB\nThreads:\t3\n";
        assert_eq!(status_field_bytes(status, "VmRSS"), Some(10 * 1024 * 1024));
        assert_eq!(status_field_bytes(status, "VmHWM"), Some(20 * 1024 * 1024));
        assert_eq!(status_field_bytes(status, "Threads"), Some(3));
        assert_eq!(status_field_bytes(status, "VmSwap"), None);
        assert_eq!(status_field_bytes("VmRSS: lots kB", "VmRSS"), None);
        assert_eq!(mib(3 * 1024 * 1024 / 2), "1.5 MiB");
    }

    #[test]
    fn cpu_ticks_are_counted_after_the_command_name() {
        let stat = "4242 (a b) c) S 1 4242 4242 0 -1 4194560 900 0 0 0 37 5 0 0 20 0 3 0";
        assert_eq!(stat_cpu_ticks(stat), Some(42));
        assert_eq!(stat_cpu_ticks("4242 (x) S 1"), None);
    }

    #[test]
    fn this_process_has_a_resident_set() {
        if cfg!(target_os = "linux") {
            let rss = rss_bytes().unwrap_or(0);
            assert!(rss > 0);
            assert!(peak_rss_bytes().unwrap_or(0) >= rss);
        }
    }
}
