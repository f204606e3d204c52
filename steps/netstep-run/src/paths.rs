//! Container paths and binaries on the host: the mount table (`/tmp`, input artifacts,
//! `--mount`) and which binary in the bin dir a container runs.

use std::path::{Path, PathBuf};

/// The binaries a container may run, in order of preference: the basename of
/// `command[0]` (`/usr/local/bin/tag-groups` -> `tag-groups`), then the image name without
/// registry, tag and digest (`netstep/mesh-connect:0.1.0` -> `mesh-connect`) for images
/// whose entrypoint is a generic path such as `/step`.
pub fn binary_candidates(command0: Option<&str>, image: Option<&str>) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(cmd) = command0 {
        out.push(cmd.rsplit('/').next().unwrap_or(cmd).to_string());
    }
    if let Some(image) = image {
        let image = image.split('@').next().unwrap_or(image);
        let last = image.rsplit('/').next().unwrap_or(image);
        out.push(last.split(':').next().unwrap_or(last).to_string());
    }
    out.retain(|b| !b.is_empty());
    out.dedup();
    out
}

/// The first candidate binary present in `bin_dir`.
pub fn find_binary(bin_dir: &Path, candidates: &[String]) -> Option<PathBuf> {
    candidates
        .iter()
        .map(|b| bin_dir.join(b))
        .find(|p| p.is_file())
}

/// True when container path `p` is `prefix` or below it.
pub(crate) fn covers(prefix: &str, p: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    p == prefix || p.strip_prefix(prefix).is_some_and(|r| r.starts_with('/'))
}

/// Container path prefix -> host directory (the node's `/tmp`, input artifacts,
/// `--mount`s).
pub type Mounts = Vec<(String, PathBuf)>;

/// Maps a container path to the host (see module docs): the longest mount prefix wins;
/// a bare path or the value of `--flag=PATH` is rewritten, nothing else.
pub fn map_path(s: &str, mounts: &[(String, PathBuf)]) -> String {
    fn map_one(p: &str, mounts: &[(String, PathBuf)]) -> Option<String> {
        let mut best: Option<(&str, &Path)> = None;
        for (prefix, host) in mounts {
            let prefix = prefix.trim_end_matches('/');
            let hit = covers(prefix, p);
            if hit && best.is_none_or(|(b, _)| prefix.len() > b.len()) {
                best = Some((prefix, host));
            }
        }
        let (prefix, host) = best?;
        let rest = p[prefix.len()..].trim_start_matches('/');
        Some(if rest.is_empty() {
            host.display().to_string()
        } else {
            host.join(rest).display().to_string()
        })
    }
    if let Some(m) = map_one(s, mounts) {
        return m;
    }
    if let Some((flag, value)) = s.split_once('=')
        && flag.starts_with('-')
        && let Some(m) = map_one(value, mounts)
    {
        return format!("{flag}={m}");
    }
    s.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_tmp_paths_only() {
        let m: Mounts = vec![("/tmp".into(), PathBuf::from("/w/task/tmp"))];
        let l = m.as_slice();
        assert_eq!(map_path("/tmp/outputs/x", l), "/w/task/tmp/outputs/x");
        assert_eq!(
            map_path("--outputs-dir=/tmp/outputs", l),
            "--outputs-dir=/w/task/tmp/outputs"
        );
        assert_eq!(map_path("/tmp", l), "/w/task/tmp");
        assert_eq!(map_path("/tmpfoo", l), "/tmpfoo");
        assert_eq!(
            map_path("--state=file:///tmp/x", l),
            "--state=file:///tmp/x"
        );
        assert_eq!(map_path("--name=a=/tmp/x", l), "--name=a=/tmp/x");
        // the longest mount prefix wins
        let m: Mounts = vec![
            ("/work".into(), PathBuf::from("/a")),
            ("/work/intent/".into(), PathBuf::from("/repo")),
        ];
        assert_eq!(
            map_path("--intent=/work/intent/x/y.yaml", &m),
            "--intent=/repo/x/y.yaml"
        );
        assert_eq!(map_path("/work/other", &m), "/a/other");
        assert_eq!(map_path("/workspace", &m), "/workspace");
    }

    #[test]
    fn binary_from_command_or_image() {
        assert_eq!(
            binary_candidates(None, Some("example.azurecr.io/netcfg/mesh-connect:0.1.0")),
            vec!["mesh-connect"]
        );
        assert_eq!(
            binary_candidates(
                Some("/usr/local/bin/tag-groups"),
                Some("x/tag-groups@sha256:ab")
            ),
            vec!["tag-groups"]
        );
        // images whose entrypoint is a generic `/step`: the image name is the fallback
        assert_eq!(
            binary_candidates(Some("/step"), Some("netstep/verify:0.1.0")),
            vec!["step", "verify"]
        );
    }
}
