//! Who is running shipshape: `$USER`, `$LOGNAME`, or the account of this process's uid in
//! `/etc/passwd` (cron and systemd may set neither variable). Recorded as the deployer of manifests,
//! deploys and rollbacks.

/// The current user's name, if it can be found.
pub fn current_user() -> Option<String> {
    ["USER", "LOGNAME"].iter().find_map(|v| std::env::var(v).ok().filter(|u| !u.is_empty())).or_else(|| {
        let uid = std::fs::read_to_string("/proc/self/status")
            .ok()?
            .lines()
            .find_map(|l| l.strip_prefix("Uid:").and_then(|rest| rest.split_whitespace().next().map(str::to_string)))?;
        std::fs::read_to_string("/etc/passwd")
            .ok()?
            .lines()
            .find(|line| line.split(':').nth(2) == Some(uid.as_str()))
            .and_then(|line| line.split(':').next().map(str::to_string))
    })
}

/// This machine's host name (the kernel's), if it can be read.
pub fn host_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .ok()
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty())
}
