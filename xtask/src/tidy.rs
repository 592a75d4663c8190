//! Repository hygiene: source files stay under a size where one file is about one
//! thing, and every library crate root documents what it owns.

use std::fs;
use std::path::{Path, PathBuf};

/// Lines after which a source file must be split by responsibility.
const MAX_LINES: usize = 900;

pub fn check(root: &Path) -> super::Result {
    let mut problems = Vec::new();
    let mut files = Vec::new();
    collect(&root.join("crates"), &mut files);
    collect(&root.join("xtask"), &mut files);
    for file in &files {
        let text = fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
        let lines = text.lines().count();
        if lines > MAX_LINES {
            problems.push(format!("{}: {lines} lines (split it by responsibility; limit {MAX_LINES})", file.display()));
        }
        if file.ends_with("src/lib.rs")
            && !text.trim_start().starts_with("//!")
            && !text.contains("#![doc = include_str!")
        {
            problems.push(format!("{}: crate root has no //! documentation", file.display()));
        }
    }
    if problems.is_empty() { Ok(()) } else { Err(format!("tidy:\n  {}", problems.join("\n  "))) }
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n != "target") {
                collect(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn repository_is_tidy() {
        super::check(&crate::root()).unwrap();
    }
}
