//! The peer's command name from `/proc`.
//!
//! A pid names a process only while it lives: once the peer exits, the pid may be
//! given to another process, and `/proc/<pid>` would then describe the wrong program.
//! The name is read from `/proc/<pid>/stat` (its second field, the same `comm` as
//! `/proc/<pid>/comm`) in one read, so the name and the start time that identify the
//! process come from the same moment: no window between two reads in which the pid
//! could change hands. A pid reused before that read cannot be seen from the pid alone.

use std::path::Path;

/// Parses the start time (clock ticks since boot, field 22) out of the text of
/// `/proc/<pid>/stat`.
///
/// The second field is the command name in parentheses, and may itself contain spaces,
/// parentheses and newlines, so fields are counted from the *last* `)`.
pub fn parse_start_time(stat: &str) -> Option<u64> {
    let after_comm = &stat[stat.rfind(')')? + 1..];
    // fields after comm start with field 3 (state); start time is field 22
    after_comm.split_ascii_whitespace().nth(22 - 3)?.parse().ok()
}

/// Parses the command name out of the text of `/proc/<pid>/stat`: what is between
/// the first `(` and the last `)` (the name may itself contain parentheses); an empty
/// name is no name.
pub fn parse_stat_comm(stat: &str) -> Option<String> {
    let name = stat.get(stat.find('(')? + 1..stat.rfind(')')?)?;
    (!name.is_empty()).then(|| name.to_string())
}

/// Parses the text of `/proc/<pid>/comm`: the kernel appends one newline; an empty
/// name is no name.
pub fn parse_comm(comm: &str) -> Option<String> {
    let name = comm.strip_suffix('\n').unwrap_or(comm);
    (!name.is_empty()).then(|| name.to_string())
}

/// The command name of process `pid`, or `None` if it is gone or unreadable (see the
/// module's note on pid reuse).
pub fn peer_comm(pid: i32) -> Option<String> {
    peer_comm_in(Path::new("/proc"), pid)
}

/// [`peer_comm`] against another procfs root (for tests and containers). A `stat`
/// without a start time is not a process's and gives `None`.
pub fn peer_comm_in(proc_root: &Path, pid: i32) -> Option<String> {
    if pid <= 0 {
        return None;
    }
    let stat = read_line(&proc_root.join(pid.to_string()).join("stat"))?;
    let stat = String::from_utf8_lossy(&stat);
    parse_start_time(&stat)?;
    parse_stat_comm(&stat)
}

/// Reads a one-line procfs file, in one `read` when it fits in 1 KiB: procfs hands a
/// whole line to a read with room for it, so a read ending in a newline is the end
/// and no second `read` is spent to see the end of file. (procfs reports a size of 0,
/// which makes `fs::read` probe with reads of 32, 64, 128… bytes: this runs at every
/// accept of the supervisor that snapshots its peers.)
fn read_line(path: &Path) -> Option<Vec<u8>> {
    use std::io::Read;
    let mut file = std::fs::File::open(path).ok()?;
    let mut buf = vec![0u8; 1024];
    let mut len = 0;
    loop {
        if len == buf.len() {
            buf.resize(buf.len() * 2, 0);
        }
        match file.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => {
                len += n;
                if buf[len - 1] == b'\n' {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    buf.truncate(len);
    Some(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat_line(comm: &str, start: u64) -> String {
        let mut fields = vec!["S".to_string()];
        fields.extend((4..22).map(|i| i.to_string()));
        fields.push(start.to_string());
        fields.extend((23..=52).map(|i| i.to_string()));
        format!("1234 ({comm}) {}\n", fields.join(" "))
    }

    #[test]
    fn start_time_survives_odd_comm_values() {
        for comm in ["sozu", "a b c", "x) (y", ")", "((", "new\nline", "", "tab\there", ") 1 2 3 4 5"] {
            assert_eq!(parse_start_time(&stat_line(comm, 987_654)), Some(987_654), "comm {comm:?}");
        }
    }

    #[test]
    fn malformed_stat_gives_none() {
        assert_eq!(parse_start_time(""), None);
        assert_eq!(parse_start_time("1234 (x) S 1 2"), None);
        assert_eq!(parse_start_time("no parenthesis at all"), None);
        assert_eq!(parse_start_time(&stat_line("x", 0).replace(" 0 ", " zero ")), None);
    }

    #[test]
    fn stat_comm_survives_odd_names() {
        for comm in ["sozu", "a b c", "x) (y", ")", "((", "new\nline", "tab\there", ") 1 2 3 4 5"] {
            assert_eq!(parse_stat_comm(&stat_line(comm, 1)).as_deref(), Some(comm), "comm {comm:?}");
        }
        assert_eq!(parse_stat_comm(&stat_line("", 1)), None);
        assert_eq!(parse_stat_comm("no parenthesis"), None);
        assert_eq!(parse_stat_comm("1 )x( S"), None);
    }

    #[test]
    fn comm_parsing() {
        assert_eq!(parse_comm("sozu\n").as_deref(), Some("sozu"));
        assert_eq!(parse_comm("a b (c)\n").as_deref(), Some("a b (c)"));
        assert_eq!(parse_comm("two\nlines\n").as_deref(), Some("two\nlines"));
        assert_eq!(parse_comm("\n"), None);
        assert_eq!(parse_comm(""), None);
    }

    #[test]
    fn own_process_and_missing_pid() {
        let own = peer_comm(std::process::id() as i32).unwrap();
        let expected = std::fs::read_to_string("/proc/self/comm").unwrap();
        assert_eq!(own, expected.trim_end());
        assert_eq!(peer_comm(0), None);
        assert_eq!(peer_comm(-1), None);
        assert_eq!(peer_comm(i32::MAX), None);
    }

    #[test]
    fn the_name_comes_from_stat_and_a_gone_or_malformed_stat_gives_none() {
        let root = std::env::temp_dir().join(format!("peer-identity-proc-{}", std::process::id()));
        let dir = root.join("42");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("stat"), stat_line("old (x)", 100)).unwrap();
        assert_eq!(peer_comm_in(&root, 42).as_deref(), Some("old (x)"));
        std::fs::write(dir.join("stat"), "42 (old) S 1 2").unwrap();
        assert_eq!(peer_comm_in(&root, 42), None, "no start time: not a process's stat");
        std::fs::remove_file(dir.join("stat")).unwrap();
        assert_eq!(peer_comm_in(&root, 42), None, "stat gone: process gone");
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn line_reads_read_whole_lines_of_any_size() {
        let own = read_line(Path::new("/proc/self/stat")).unwrap();
        assert!(own.ends_with(b"\n") && own.starts_with(std::process::id().to_string().as_bytes()));
        let path = std::env::temp_dir().join(format!("peer-identity-read-line-{}", std::process::id()));
        let mut long = vec![b'a'; 5000];
        long.push(b'\n');
        std::fs::write(&path, &long).unwrap();
        assert_eq!(read_line(&path).unwrap(), long, "past the first 1 KiB");
        let unterminated: Vec<u8> = (0..3000u32).map(|i| b'a' + (i % 26) as u8).collect();
        std::fs::write(&path, &unterminated).unwrap();
        assert_eq!(read_line(&path).unwrap(), unterminated, "no newline: up to the end of the file");
        std::fs::remove_file(&path).unwrap();
        assert!(read_line(Path::new("/proc/0/nope")).is_none());
    }
}
