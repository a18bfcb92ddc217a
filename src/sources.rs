//! Finding and reading manifest files (docs/manifests.md): files or directories, recursive,
//! sorted, hidden entries skipped, symlinks inside directories not followed, every file capped in
//! size and required to be UTF-8. The only module that reads manifests from disk.

use crate::manifest::SourceFile;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Larger manifests are refused before they are read into memory.
pub const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// What [`read`] found: the manifests, and the symlinks inside directories it did not follow,
/// which the shell reports (a linked manifest would otherwise enforce nothing, silently).
#[derive(Debug, Default)]
pub struct Found {
    pub files: Vec<SourceFile>,
    pub skipped_links: Vec<String>,
}

/// The warning for a symlink that was not followed.
pub fn skipped_link_warning(path: &str) -> String {
    format!(
        "{path}: a symlink, not followed (links inside a manifest directory are never read; name \
         the file itself on the command line to read it)"
    )
}

/// Reads every manifest under `paths` (default `./manifests`). Errors are whole messages.
pub fn read(paths: &[PathBuf]) -> Result<Found, Vec<String>> {
    let default = [PathBuf::from("manifests")];
    let paths = if paths.is_empty() {
        if !default[0].exists() {
            return Err(vec![
                "error: no manifest paths given and ./manifests does not exist; pass files or directories".into(),
            ]);
        }
        &default[..]
    } else {
        paths
    };
    let mut found = Vec::new();
    let mut links = Vec::new();
    let mut errors = Vec::new();
    for p in paths {
        // A path the user names is followed even if it is a symlink; links inside are not.
        match fs::metadata(p) {
            Err(e) => errors.push(format!("error: {}: {}", p.display(), io_reason(&e))),
            Ok(m) if m.is_dir() => walk(p, &mut found, &mut links, &mut errors, 0),
            Ok(m) if m.is_file() => found.push(p.clone()),
            Ok(_) => errors.push(format!(
                "error: {}: not a regular file or directory",
                p.display()
            )),
        }
    }
    let mut files = Vec::new();
    for p in found {
        match read_one(&p) {
            Ok(text) => files.push(SourceFile {
                path: p.display().to_string(),
                text,
            }),
            Err(e) => errors.push(format!("error: {}: {e}", p.display())),
        }
    }
    if errors.is_empty() {
        Ok(Found {
            files,
            skipped_links: links
                .iter()
                .map(|p| crate::util::escape_text(&p.display().to_string()).into_owned())
                .collect(),
        })
    } else {
        Err(errors)
    }
}

fn walk(
    dir: &Path,
    found: &mut Vec<PathBuf>,
    links: &mut Vec<PathBuf>,
    errors: &mut Vec<String>,
    depth: usize,
) {
    if depth > 64 {
        errors.push(format!(
            "error: {}: directories nested deeper than 64 levels",
            dir.display()
        ));
        return;
    }
    let entries = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) => {
            errors.push(format!("error: {}: {}", dir.display(), io_reason(&e)));
            return;
        }
    };
    let mut entries: Vec<_> = entries.filter_map(|e| e.ok()).collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        let Ok(ft) = entry.file_type() else { continue };
        if ft.is_symlink() {
            // Not followed: a link could leave the tree or loop. Reported, since a manifest
            // behind it would otherwise be ignored without a word.
            links.push(path);
            continue;
        }
        if ft.is_dir() {
            walk(&path, found, links, errors, depth + 1);
        } else if ft.is_file() && is_yaml(&path) {
            found.push(path);
        }
    }
}

fn is_yaml(p: &Path) -> bool {
    matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"))
}

fn read_one(p: &Path) -> Result<String, String> {
    let f = fs::File::open(p).map_err(|e| io_reason(&e))?;
    let len = f.metadata().map_err(|e| io_reason(&e))?.len();
    if len > MAX_FILE_BYTES {
        return Err(format!(
            "{len} bytes is larger than the {MAX_FILE_BYTES}-byte limit for a manifest"
        ));
    }
    let mut buf = Vec::with_capacity(len as usize);
    f.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(|e| io_reason(&e))?;
    if buf.len() as u64 > MAX_FILE_BYTES {
        return Err(format!(
            "larger than the {MAX_FILE_BYTES}-byte limit for a manifest"
        ));
    }
    String::from_utf8(buf).map_err(|e| {
        format!(
            "not UTF-8 (invalid byte at offset {}); save the file as UTF-8",
            e.utf8_error().valid_up_to()
        )
    })
}

/// An I/O error as a short reason, without Rust's "(os error N)" noise.
/// A file read whole as text (a policy file): its name as messages give it, and its text.
pub fn read_text(path: &Path) -> Result<(String, String), String> {
    std::fs::read_to_string(path)
        .map(|t| (path.display().to_string(), t))
        .map_err(|e| format!("{}: {}", path.display(), io_reason(&e)))
}

/// A file opened for reading as a stream (a saved plan, a directory file).
pub fn open(path: &Path) -> Result<std::fs::File, String> {
    std::fs::File::open(path).map_err(|e| format!("{}: {}", path.display(), io_reason(&e)))
}

pub fn io_reason(e: &std::io::Error) -> String {
    use std::io::ErrorKind::*;
    match e.kind() {
        NotFound => "no such file or directory".into(),
        PermissionDenied => "permission denied".into(),
        AlreadyExists => "already exists".into(),
        _ => {
            let s = e.to_string();
            s.split(" (os error").next().unwrap_or(&s).to_string()
        }
    }
}
