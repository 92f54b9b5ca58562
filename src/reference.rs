//! Image references, one rule for all of pausebake: the name CRI looks an image up by
//! (docker's `ParseDockerRef`, `containerd-store.md` §7.2). Names from `--name`, from an
//! archive's annotations or RepoTags, and from a containerd config all go through
//! [`normalize`]; [`check_qualified`] refuses a name that is not already in that form;
//! [`check_digest`] refuses a name whose digest is not the image's own; and
//! [`verbatim_companion`] is the configured form that containerd 2.3.0 to 2.3.3 also look
//! up as written.

use anyhow::{anyhow, ensure, Result};

/// Normalizes an image reference the way CRI does before looking it up (docker's
/// `ParseDockerRef`): `pause:3.10` -> `docker.io/library/pause:3.10`, a missing tag becomes
/// `:latest`, `name:tag@digest` becomes `name@digest`. CRI finds an image only by exactly
/// this string (`containerd-store.md` §7.2), and containerd 2.x pins only the exact configured
/// string, so configure writes this form too.
pub fn normalize(reference: &str) -> Result<String> {
    let bad = |why: &str| anyhow!("parsing image reference {reference:?}: {why}");
    let (name_tag, digest) = match reference.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (reference, None),
    };
    if let Some(d) = digest {
        if !d.starts_with("sha256:") {
            return Err(bad("only sha256 digests are supported"));
        }
        if crate::digest::sha256_hex(d).is_none() {
            return Err(bad("the digest is not 64 lower-case hex digits"));
        }
    }
    let last_slash = name_tag.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match name_tag[last_slash..].rfind(':') {
        Some(i) => (
            &name_tag[..last_slash + i],
            Some(&name_tag[last_slash + i + 1..]),
        ),
        None => (name_tag, None),
    };
    if let Some(t) = tag {
        let ok = !t.is_empty()
            && t.len() <= 128
            && t.bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
            && !t.starts_with(['.', '-']);
        ensure!(ok, bad("invalid tag"));
    }
    let (domain, path) = match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.bytes().any(|c| c.is_ascii_uppercase()) =>
        {
            (first, rest.to_string())
        }
        Some(_) => ("docker.io", name.to_string()),
        None => ("docker.io", name.to_string()),
    };
    let domain = if domain == "index.docker.io" {
        "docker.io"
    } else {
        domain
    };
    let path = if domain == "docker.io" && !path.contains('/') {
        format!("library/{path}")
    } else {
        path
    };
    ensure!(
        !path.is_empty()
            && path.split('/').all(|c| !c.is_empty()
                && c.bytes().all(|b| b.is_ascii_lowercase()
                    || b.is_ascii_digit()
                    || matches!(b, b'.' | b'_' | b'-'))),
        bad("repository names are lower-case letters, digits and . _ - separated by /")
    );
    Ok(match (digest, tag) {
        (Some(d), _) => format!("{domain}/{path}@{d}"),
        (None, Some(t)) => format!("{domain}/{path}:{t}"),
        (None, None) => format!("{domain}/{path}:latest"),
    })
}

/// The tag of a reference (`registry.k8s.io/pause:3.10` -> `3.10`), if it has one.
pub fn tag(name: &str) -> Option<&str> {
    let name = name.split('@').next().unwrap_or(name);
    let last = name.rsplit('/').next().unwrap_or(name);
    last.split_once(':').map(|(_, tag)| tag)
}

/// Refuses a name CRI would not find as written: containerd's importer records
/// `io.containerd.image.name` verbatim, while CRI looks images up by the normalized
/// reference, so `pause:3.10` would be stored as written and never match
/// `docker.io/library/pause:3.10`.
pub fn check_qualified(name: &str) -> Result<()> {
    let normalized = normalize(name).ok();
    ensure!(
        normalized.as_deref() != Some(&format!("{name}:latest")),
        "image name {name:?} has no tag; give one, like registry.k8s.io/pause:3.10"
    );
    ensure!(
        normalized.as_deref() == Some(name),
        "image name {name:?} is not a fully qualified reference; give one with a registry, \
         like registry.k8s.io/pause:3.10"
    );
    Ok(())
}

/// The digest a reference pins (`…@sha256:…`), if it has one.
pub fn digest(reference: &str) -> Option<&str> {
    reference.split_once('@').map(|(_, d)| d)
}

/// Refuses `name` when it pins a digest that is not `target`, the digest of the image (its
/// index or manifest) it would name: a digest in a name is a promise about content, which
/// CRI and whoever reads the name take at its word.
pub fn check_digest(name: &str, target: &str) -> Result<()> {
    match digest(name) {
        Some(d) if d != target => {
            let repository = name.split('@').next().unwrap_or(name);
            let repository = match tag(repository) {
                Some(t) => &repository[..repository.len() - t.len() - 1],
                None => repository,
            };
            Err(anyhow!(
                "image name {name} pins digest {d}, but the image it names has digest {target}: \
                 a digest in a name must be the image's own; name it {repository}@{target}, or \
                 by a tag alone (nothing was written)"
            ))
        }
        _ => Ok(()),
    }
}

/// Whether a reference names both a tag and a digest (`pause:3.10@sha256:…`), which
/// [`normalize`] turns into the digest-only form containerd records and looks up.
pub fn has_tag_and_digest(reference: &str) -> bool {
    digest(reference).is_some() && tag(reference.split('@').next().unwrap_or_default()).is_some()
}

/// The configured reference itself, when it is not in the normalized form CRI looks up and
/// that form is among the `names` recorded: containerd 2.3.0 to 2.3.3 look it up verbatim
/// as well ([`crate::containerd::versions::SandboxLookup`]), so the image is recorded under
/// both. `None` when nothing more is needed.
pub fn verbatim_companion(configured: &str, names: &[String]) -> Option<String> {
    let normalized = normalize(configured).ok()?;
    (normalized != configured && names.contains(&normalized)).then(|| configured.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_normalized_like_cri() {
        for (input, want) in [
            ("registry.k8s.io/pause:3.10", "registry.k8s.io/pause:3.10"),
            ("pause", "docker.io/library/pause:latest"),
            ("pause:3.9", "docker.io/library/pause:3.9"),
            ("me/pause:1", "docker.io/me/pause:1"),
            (
                "localhost/kubernetes/pause",
                "localhost/kubernetes/pause:latest",
            ),
            ("localhost:5000/p:1", "localhost:5000/p:1"),
            ("index.docker.io/x/y:z", "docker.io/x/y:z"),
        ] {
            assert_eq!(normalize(input).unwrap(), want, "{input}");
        }
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            normalize(&format!("registry.k8s.io/pause:3.10@{d}")).unwrap(),
            format!("registry.k8s.io/pause@{d}")
        );
        for bad in ["Pause:1", "registry.k8s.io/pause:", "x@sha256:12", ""] {
            assert!(normalize(bad).is_err(), "{bad}");
        }
    }

    // The cases of config.rs's former `normalizeerence`, which this function replaced.
    #[test]
    fn references_normalize_like_cri() {
        let n = |s: &str| normalize(s).unwrap();
        assert_eq!(
            n("registry.k8s.io/pause:3.10"),
            "registry.k8s.io/pause:3.10"
        );
        assert_eq!(n("pause:3.10"), "docker.io/library/pause:3.10");
        assert_eq!(n("pause"), "docker.io/library/pause:latest");
        assert_eq!(n("rancher/pause:3.6"), "docker.io/rancher/pause:3.6");
        assert_eq!(
            n("localhost/kubernetes/pause"),
            "localhost/kubernetes/pause:latest"
        );
        assert_eq!(n("localhost:5000/pause:1"), "localhost:5000/pause:1");
        // the tag is dropped when a digest pins the image (the old case used `sha256:abc`,
        // which CRI itself rejects; a digest must be 64 hex digits)
        let d = format!("sha256:{}", "ab".repeat(32));
        assert_eq!(
            n(&format!("registry.k8s.io/pause:3.10@{d}")),
            format!("registry.k8s.io/pause@{d}")
        );
        assert!(normalize("registry.k8s.io/pause:3.10@sha256:abc").is_err());
        assert!(normalize("Registry.k8s.io/Pause:1").is_err());
        assert!(normalize("pause:").is_err());
    }

    #[test]
    fn names_must_be_full_references() {
        check_qualified("registry.k8s.io/pause:3.10").unwrap();
        check_qualified("localhost/pause:1").unwrap();
        check_qualified("localhost:5000/pause:1").unwrap();
        let err = check_qualified("pause:3.10").unwrap_err().to_string();
        assert_eq!(
            err,
            "image name \"pause:3.10\" is not a fully qualified reference; give one with a \
             registry, like registry.k8s.io/pause:3.10"
        );
        let err = check_qualified("registry.k8s.io/pause")
            .unwrap_err()
            .to_string();
        assert!(err.ends_with("has no tag; give one, like registry.k8s.io/pause:3.10"));
        assert!(check_qualified("me/pause:1").is_err());
        assert_eq!(tag("registry.k8s.io/pause:3.10"), Some("3.10"));
        assert_eq!(tag("localhost:5000/pause"), None);
    }

    #[test]
    fn a_digest_in_a_name_must_be_the_images_own() {
        let image = format!("sha256:{}", "b".repeat(64));
        let other = format!("sha256:{}", "0".repeat(64));
        check_digest("registry.k8s.io/pause:3.10", &image).unwrap();
        check_digest(&format!("registry.k8s.io/pause@{image}"), &image).unwrap();
        let err = check_digest(&format!("registry.k8s.io/pause:3.10@{other}"), &image)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            format!(
                "image name registry.k8s.io/pause:3.10@{other} pins digest {other}, but the \
                 image it names has digest {image}: a digest in a name must be the image's \
                 own; name it registry.k8s.io/pause@{image}, or by a tag alone (nothing was \
                 written)"
            )
        );
        assert!(has_tag_and_digest(&format!(
            "localhost:5000/pause:3.10@{image}"
        )));
        assert!(!has_tag_and_digest(&format!(
            "localhost:5000/pause@{image}"
        )));
        assert!(!has_tag_and_digest("localhost:5000/pause:3.10"));
    }

    #[test]
    fn a_configured_name_not_normalized_is_recorded_verbatim_too() {
        let names = vec!["docker.io/rancher/mirrored-pause:3.6".to_string()];
        assert_eq!(
            verbatim_companion("rancher/mirrored-pause:3.6", &names).as_deref(),
            Some("rancher/mirrored-pause:3.6")
        );
        assert_eq!(
            verbatim_companion("docker.io/rancher/mirrored-pause:3.6", &names),
            None
        );
        // another image's name is none of this import's business
        assert_eq!(verbatim_companion("pause:3.6", &names), None);
        let local = vec!["localhost/kubernetes/pause:latest".to_string()];
        assert_eq!(
            verbatim_companion("localhost/kubernetes/pause", &local).as_deref(),
            Some("localhost/kubernetes/pause")
        );
    }

    #[test]
    fn ref_tags() {
        assert_eq!(tag("registry.k8s.io/pause:3.10"), Some("3.10"));
        assert_eq!(tag("localhost:5000/pause"), None);
        assert_eq!(tag("localhost:5000/pause:v1"), Some("v1"));
        assert_eq!(tag("pause@sha256:abc"), None);
    }
}
