//! What a `--model` value names: a local model dir, a `.gguf` file, or a Hugging Face hub id
//! (`org/name`) found offline in the hub cache.
//!
//! Hub ids resolve the way `huggingface_hub` lays its cache out:
//! `<cache>/models--org--name/refs/<revision>` holds a commit hash, and
//! `<cache>/models--org--name/snapshots/<commit>/` the files. The caches searched are
//! `$HF_HUB_CACHE`, `$HF_HOME/hub`, `$XDG_CACHE_HOME/huggingface/hub` and
//! `~/.cache/huggingface/hub`, in that order. Nothing is downloaded.
//!
//! Accepted forms: `org/name`, `org/name@revision` (a branch, tag or commit hash; `main` by
//! default) and `org/name[@revision]/path/in/repo` (one file of the snapshot, e.g. a `.gguf`).
//! A snapshot without `config.json` but with exactly one `.gguf` file resolves to that file.

use std::fmt;
use std::path::{Path, PathBuf};

/// Why a `--model` value could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// Neither a local path nor a hub id present in any cache.
    #[error(
        "`{spec}` is not a local file or directory{}",
        if searched.is_empty() {
            String::new()
        } else {
            format!(
                ", nor in a Hugging Face cache (looked for {})",
                searched.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
            )
        }
    )]
    NotFound {
        /// The value given.
        spec: String,
        /// The cache dirs looked at for the hub id (empty when it is not one).
        searched: Vec<PathBuf>,
    },
    /// The repo is cached, but not at this revision.
    #[error(
        "{repo} is cached in {} but not at revision `{revision}` (cached: {})",
        dir.display(),
        if available.is_empty() { "none".to_owned() } else { available.join(", ") }
    )]
    RevisionNotFound {
        /// `org/name`.
        repo: String,
        /// The revision asked for.
        revision: String,
        /// The repo's cache dir.
        dir: PathBuf,
        /// Branches, tags and snapshot commits that are cached.
        available: Vec<String>,
    },
    /// A file asked for inside a snapshot is not there.
    #[error("{}: no such file in the cached snapshot of {repo}", path.display())]
    FileNotFound {
        /// `org/name`.
        repo: String,
        /// The missing path.
        path: PathBuf,
    },
    /// A snapshot with several `.gguf` files and no `config.json`: which one is meant?
    #[error(
        "{} holds several GGUF files; name one as {repo}/FILE: {}",
        dir.display(),
        files.join(", ")
    )]
    AmbiguousGguf {
        /// `org/name`.
        repo: String,
        /// The snapshot dir.
        dir: PathBuf,
        /// The `.gguf` files in it.
        files: Vec<String>,
    },
    /// A cache file that could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Where a resolved model came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A path given directly.
    Local,
    /// A snapshot of the hub cache.
    HubCache {
        /// `org/name`.
        repo: String,
        /// The revision asked for (`main` unless given).
        revision: String,
        /// The snapshot's commit hash.
        commit: String,
    },
}

/// A model dir or file, and how it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The dir or file to load.
    pub path: PathBuf,
    /// Where it came from.
    pub origin: Origin,
}

impl fmt::Display for Resolved {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.origin {
            Origin::Local => write!(f, "{}", self.path.display()),
            Origin::HubCache {
                repo,
                revision,
                commit,
            } => write!(
                f,
                "{repo}@{revision} ({}, commit {commit})",
                self.path.display()
            ),
        }
    }
}

/// The hub caches to search, from the environment: `$HF_HUB_CACHE`, `$HF_HOME/hub`,
/// `$XDG_CACHE_HOME/huggingface/hub`, `$HOME/.cache/huggingface/hub` (those set, without
/// repeats).
pub fn hub_cache_dirs() -> Vec<PathBuf> {
    hub_cache_dirs_from(|name| std::env::var_os(name))
}

/// [`hub_cache_dirs`] with the environment read through `env`.
fn hub_cache_dirs_from(env: impl Fn(&str) -> Option<std::ffi::OsString>) -> Vec<PathBuf> {
    let var = |name: &str| env(name).filter(|v| !v.is_empty());
    let mut dirs: Vec<PathBuf> = Vec::new();
    let candidates = [
        var("HF_HUB_CACHE").map(PathBuf::from),
        var("HF_HOME").map(|h| PathBuf::from(h).join("hub")),
        var("XDG_CACHE_HOME").map(|c| PathBuf::from(c).join("huggingface/hub")),
        var("HOME").map(|h| PathBuf::from(h).join(".cache/huggingface/hub")),
    ];
    for dir in candidates.into_iter().flatten() {
        if !dirs.contains(&dir) {
            dirs.push(dir);
        }
    }
    dirs
}

/// Resolves a `--model` value with the caches of [`hub_cache_dirs`].
pub fn resolve_model(spec: &Path) -> Result<Resolved, ResolveError> {
    resolve_model_in(spec, &hub_cache_dirs())
}

/// A hub id split into its parts.
#[derive(Debug, PartialEq, Eq)]
struct HubId<'a> {
    repo: &'a str,
    org: &'a str,
    name: &'a str,
    revision: &'a str,
    file: Option<&'a str>,
}

/// `org/name[@revision][/file...]`, with hub-valid names (letters, digits, `-`, `_`, `.`).
fn parse_hub_id(spec: &str) -> Option<HubId<'_>> {
    let valid = |s: &str| {
        !s.is_empty()
            && !s.starts_with('.')
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    let mut parts = spec.splitn(3, '/');
    let org = parts.next()?;
    let name_rev = parts.next()?;
    let file = parts.next();
    let (name, revision) = match name_rev.split_once('@') {
        Some((n, r)) => (n, r),
        None => (name_rev, "main"),
    };
    if !valid(org) || !valid(name) || revision.is_empty() || revision.contains(['/', '\\']) {
        return None;
    }
    if file.is_some_and(|f| f.is_empty() || f.split('/').any(|c| c == ".." || c.is_empty())) {
        return None;
    }
    let repo_len = org.len() + 1 + name.len();
    Some(HubId {
        repo: &spec[..repo_len],
        org,
        name,
        revision,
        file,
    })
}

/// [`resolve_model`] with the given cache dirs (first match wins).
pub fn resolve_model_in(spec: &Path, caches: &[PathBuf]) -> Result<Resolved, ResolveError> {
    if spec.exists() {
        return Ok(Resolved {
            path: spec.to_path_buf(),
            origin: Origin::Local,
        });
    }
    let not_found = |searched: Vec<PathBuf>| ResolveError::NotFound {
        spec: spec.display().to_string(),
        searched,
    };
    let Some(id) = spec.to_str().and_then(parse_hub_id) else {
        return Err(not_found(Vec::new()));
    };
    let repo_dir_name = format!("models--{}--{}", id.org, id.name);
    let mut searched = Vec::new();
    for cache in caches {
        let dir = cache.join(&repo_dir_name);
        if !dir.is_dir() {
            searched.push(dir);
            continue;
        }
        return resolve_in_repo_dir(&id, &dir);
    }
    Err(not_found(searched))
}

fn resolve_in_repo_dir(id: &HubId<'_>, dir: &Path) -> Result<Resolved, ResolveError> {
    let ref_file = dir.join("refs").join(id.revision);
    let commit = if ref_file.is_file() {
        std::fs::read_to_string(&ref_file)
            .map_err(|source| ResolveError::Io {
                path: ref_file.clone(),
                source,
            })?
            .trim()
            .to_owned()
    } else {
        id.revision.to_owned()
    };
    let snapshot = dir.join("snapshots").join(&commit);
    if commit.is_empty() || !snapshot.is_dir() {
        return Err(ResolveError::RevisionNotFound {
            repo: id.repo.to_owned(),
            revision: id.revision.to_owned(),
            dir: dir.to_path_buf(),
            available: cached_revisions(dir),
        });
    }
    let origin = Origin::HubCache {
        repo: id.repo.to_owned(),
        revision: id.revision.to_owned(),
        commit,
    };
    if let Some(file) = id.file {
        let path = snapshot.join(file);
        if !path.exists() {
            return Err(ResolveError::FileNotFound {
                repo: id.repo.to_owned(),
                path,
            });
        }
        return Ok(Resolved { path, origin });
    }
    if !snapshot.join("config.json").exists() {
        let mut ggufs: Vec<String> = std::fs::read_dir(&snapshot)
            .map_err(|source| ResolveError::Io {
                path: snapshot.clone(),
                source,
            })?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.to_ascii_lowercase().ends_with(".gguf"))
            .collect();
        ggufs.sort();
        match ggufs.len() {
            0 => {}
            1 => {
                return Ok(Resolved {
                    path: snapshot.join(&ggufs[0]),
                    origin,
                });
            }
            _ => {
                return Err(ResolveError::AmbiguousGguf {
                    repo: id.repo.to_owned(),
                    dir: snapshot,
                    files: ggufs,
                });
            }
        }
    }
    Ok(Resolved {
        path: snapshot,
        origin,
    })
}

/// `refs/*` names and `snapshots/*` commits of a cached repo, sorted.
fn cached_revisions(dir: &Path) -> Vec<String> {
    let list = |sub: &str| -> Vec<String> {
        std::fs::read_dir(dir.join(sub))
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut out = list("refs");
    out.sort();
    let mut snapshots = list("snapshots");
    snapshots.sort();
    out.extend(snapshots);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake cache: `models--acme--tiny` at `main` -> abc123 (config.json), a `v1` tag ->
    /// def456 (two GGUF files), and `models--acme--onegguf` with one GGUF file.
    fn fake_cache(name: &str) -> PathBuf {
        let root = std::env::temp_dir().join(format!("kiln-resolve-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let repo = root.join("hub/models--acme--tiny");
        for (rev, commit) in [("main", "abc123"), ("v1", "def456")] {
            std::fs::create_dir_all(repo.join("refs")).unwrap();
            std::fs::write(repo.join("refs").join(rev), format!("{commit}\n")).unwrap();
            std::fs::create_dir_all(repo.join("snapshots").join(commit)).unwrap();
        }
        std::fs::write(repo.join("snapshots/abc123/config.json"), "{}").unwrap();
        std::fs::write(repo.join("snapshots/def456/a.Q4_0.gguf"), "").unwrap();
        std::fs::write(repo.join("snapshots/def456/b.Q8_0.gguf"), "").unwrap();
        let one = root.join("hub/models--acme--onegguf/snapshots/0ff1ce");
        std::fs::create_dir_all(&one).unwrap();
        std::fs::create_dir_all(root.join("hub/models--acme--onegguf/refs")).unwrap();
        std::fs::write(root.join("hub/models--acme--onegguf/refs/main"), "0ff1ce").unwrap();
        std::fs::write(one.join("model-Q4_K_M.gguf"), "").unwrap();
        root
    }

    fn hub(root: &Path, spec: &str) -> Result<Resolved, ResolveError> {
        let empty = root.join("empty-cache");
        resolve_model_in(Path::new(spec), &[empty, root.join("hub")])
    }

    #[test]
    fn cache_dirs_follow_the_environment() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                vars.iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| std::ffi::OsString::from(v))
            }
        };
        assert_eq!(
            hub_cache_dirs_from(env(&[
                ("HF_HUB_CACHE", "/c/hub"),
                ("HF_HOME", "/hf"),
                ("HOME", "/home/u"),
            ])),
            [
                PathBuf::from("/c/hub"),
                PathBuf::from("/hf/hub"),
                PathBuf::from("/home/u/.cache/huggingface/hub"),
            ]
        );
        assert_eq!(
            hub_cache_dirs_from(env(&[
                ("HF_HUB_CACHE", ""),
                ("XDG_CACHE_HOME", "/home/u/.cache"),
                ("HOME", "/home/u"),
            ])),
            [PathBuf::from("/home/u/.cache/huggingface/hub")]
        );
    }

    #[test]
    fn parses_hub_ids() {
        let id = parse_hub_id("acme/tiny@v1/sub/f.gguf").unwrap();
        assert_eq!(
            id,
            HubId {
                repo: "acme/tiny",
                org: "acme",
                name: "tiny",
                revision: "v1",
                file: Some("sub/f.gguf")
            }
        );
        assert_eq!(parse_hub_id("acme/tiny").unwrap().revision, "main");
        for bad in [
            "tiny",
            "/abs/path",
            "./rel/path",
            "a/b/../../etc",
            "a b/c",
            "a/b@",
            "a/",
        ] {
            assert!(parse_hub_id(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn hub_ids_resolve_to_snapshots() {
        let root = fake_cache("ok");
        let snap = root.join("hub/models--acme--tiny/snapshots");
        let r = hub(&root, "acme/tiny").unwrap();
        assert_eq!(r.path, snap.join("abc123"));
        assert_eq!(
            r.origin,
            Origin::HubCache {
                repo: "acme/tiny".into(),
                revision: "main".into(),
                commit: "abc123".into()
            }
        );
        assert!(r.to_string().starts_with("acme/tiny@main ("), "{r}");
        // A commit hash is a revision too.
        assert_eq!(
            hub(&root, "acme/tiny@abc123").unwrap().path,
            snap.join("abc123")
        );
        assert_eq!(
            hub(&root, "acme/tiny@v1/b.Q8_0.gguf").unwrap().path,
            snap.join("def456/b.Q8_0.gguf")
        );
        assert_eq!(
            hub(&root, "acme/onegguf").unwrap().path,
            root.join("hub/models--acme--onegguf/snapshots/0ff1ce/model-Q4_K_M.gguf")
        );
        // Local paths win and are returned as given.
        let local = hub(&root, root.to_str().unwrap()).unwrap();
        assert_eq!((local.path, local.origin), (root.clone(), Origin::Local));
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn errors_say_where_they_looked() {
        let root = fake_cache("err");
        let err = hub(&root, "acme/missing").unwrap_err().to_string();
        assert!(err.contains("`acme/missing`"), "{err}");
        assert!(err.contains("empty-cache/models--acme--missing"), "{err}");
        assert!(err.contains("hub/models--acme--missing"), "{err}");
        let err = hub(&root, "acme/tiny@v2").unwrap_err().to_string();
        assert!(
            err.contains("revision `v2`") && err.contains("main, v1, abc123, def456"),
            "{err}"
        );
        let err = hub(&root, "acme/tiny@v1").unwrap_err().to_string();
        assert!(err.contains("a.Q4_0.gguf, b.Q8_0.gguf"), "{err}");
        let err = hub(&root, "acme/tiny/nope.gguf").unwrap_err().to_string();
        assert!(err.contains("nope.gguf: no such file"), "{err}");
        let err = hub(&root, "/no/such/dir").unwrap_err().to_string();
        assert_eq!(err, "`/no/such/dir` is not a local file or directory");
        std::fs::remove_dir_all(&root).unwrap();
    }
}
