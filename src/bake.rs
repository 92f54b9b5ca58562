//! `bake`: compile, assemble, import, configure and verify in one step, one summary.
//!
//! The choices `bake` makes for a root, each printed with where it came from:
//! - platform: `--platform`, else the root's binaries, else the host's;
//! - containerd version: `--containerd-version`, else the root's binary or package, else the
//!   newest layout pausebake knows (config version 3, `pinned_images.sandbox`): a fresh root
//!   most likely gets a current containerd;
//! - name: the first `--name`, else the pause of the Kubernetes version (`--kubernetes-version`
//!   or found in the root), else the default of that containerd. The config gets that name
//!   byte for byte, so CRI finds it (and 2.x pins it).

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;

use crate::cli::{BakeArgs, CompileArgs};
use crate::containerd::config::{self, Found};
use crate::containerd::store::{self, Spec, Time};
use crate::containerd::verify;
use crate::containerd::versions::Version;
use crate::image::Image;
use crate::platform::Platform;
use crate::rootfs::Root;

/// Everything `bake` did, for the summary and `--json`.
#[derive(Debug, serde::Serialize)]
pub struct Summary {
    pub root: String,
    pub platform: String,
    pub platform_source: String,
    pub containerd_version: String,
    pub containerd_version_source: String,
    pub kubernetes_version: Option<String>,
    pub name: String,
    pub name_source: String,
    pub image_source: String,
    pub import: store::Report,
    pub configure: ConfigChange,
    pub verify: verify::Report,
}

/// What happened to the config file.
#[derive(Debug, serde::Serialize)]
pub struct ConfigChange {
    pub path: String,
    pub key: String,
    pub value: String,
    pub created: bool,
    pub changed: bool,
    /// Imported files or stale keys that may override the setting.
    pub warnings: Vec<String>,
}

/// `pausebake bake`.
pub fn bake(args: &BakeArgs) -> Result<ExitCode> {
    let root = Root::new(&args.target.root)?;
    let summary = run(&root, args)?;
    print(&summary, args.output.json)?;
    Ok(if summary.verify.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    })
}

fn run(root: &Root, args: &BakeArgs) -> Result<Summary> {
    let (platform, platform_source) = verify::resolve_platform(root, args.target.platform)?;
    let Found {
        version: ctd,
        source: ctd_source,
    } = config::containerd_version_or_newest(root, args.target.containerd_version.as_deref())?;
    let k8s = config::kubernetes_version(root, args.kubernetes_version.as_deref())?;
    let (mut names, name_source) = choose_names(&args.names, k8s.as_ref(), ctd)?;
    let name = names[0].clone();

    let epoch = args.spec.epoch.source_date_epoch;
    let (image, image_source) = image_for(args, platform, &names)?;
    for n in &image.names {
        push_unique(&mut names, store::normalize_ref(n)?);
    }
    let import = store::install(
        &image,
        root,
        &Spec {
            names,
            namespace: args.target.namespace.clone(),
            platform: Some(platform),
            pin: !args.no_pin,
            time: Time::for_records(epoch),
            root_arch: platform.arch,
        },
    )?;
    let configure = configure(root, ctd, &name, args.config.config.as_deref())?;
    let report = verify::audit(
        root,
        &args.target.namespace,
        Some(platform),
        Some(&ctd.to_string()),
        k8s.as_ref().map(|k| k.version.to_string()).as_deref(),
        args.config.config.as_deref(),
    )?;
    Ok(Summary {
        root: root.dir().display().to_string(),
        platform: platform.to_string(),
        platform_source,
        containerd_version: ctd.to_string(),
        containerd_version_source: ctd_source,
        kubernetes_version: k8s.map(|k| format!("{} ({})", k.version, k.source)),
        name,
        name_source,
        image_source,
        import,
        configure,
        verify: report,
    })
}

/// The image records to write, the first being the one the config names, and why that one:
/// the first `--name`, else the pause of the Kubernetes version, else containerd's default.
/// All normalized as CRI looks them up.
pub fn choose_names(
    given: &[String],
    k8s: Option<&Found>,
    ctd: Version,
) -> Result<(Vec<String>, String)> {
    let (first, why) = match given.first() {
        Some(n) => (store::normalize_ref(n)?, "--name".to_string()),
        None => config::default_image(k8s, ctd)?,
    };
    let mut names = vec![first];
    for n in given.iter().skip(1) {
        push_unique(&mut names, store::normalize_ref(n)?);
    }
    Ok((names, why))
}

fn push_unique(names: &mut Vec<String>, name: String) {
    if !names.contains(&name) {
        names.push(name);
    }
}

/// The image to bake: `--archive`, else assembled from `--binary` files or a fresh compile
/// for the root's architecture.
fn image_for(args: &BakeArgs, platform: Platform, names: &[String]) -> Result<(Image, String)> {
    if let Some(path) = &args.archive {
        let image = crate::archive::read(path)?;
        return Ok((image, format!("archive {}", path.display())));
    }
    let (binaries, source) = if args.spec.binary.is_empty() {
        let arch = if args.compile.arch.is_empty() {
            vec![platform.arch]
        } else {
            args.compile.arch.clone()
        };
        let compile = CompileArgs {
            arch,
            cc: args.compile.cc.clone(),
            pause_version: args.compile.pause_version.clone(),
        };
        let built = crate::pause::compile_all(&compile)?;
        let archs: Vec<&str> = built.iter().map(|(a, _)| a.name()).collect();
        let source = format!("compiled for {}", archs.join(", "));
        (built, source)
    } else {
        let bins = crate::pause::read_binaries(&args.spec.binary)?;
        let list: Vec<String> = args
            .spec
            .binary
            .iter()
            .map(|(a, p)| format!("{a}={}", p.display()))
            .collect();
        (bins, format!("--binary {}", list.join(" ")))
    };
    let image = crate::image::assemble(
        &binaries,
        &crate::image::ImageSpec {
            names: names.to_vec(),
            // Image content defaults to epoch 0 so it is byte-identical across builds.
            epoch: args.spec.epoch.source_date_epoch.unwrap_or(0),
            compression: args.spec.compression,
        },
    )?;
    Ok((image, source))
}

/// Sets the sandbox image in the root's config for containerd `v` with `config::apply`, as
/// `configure` does (the key that version reads, every other line kept, the file reached
/// through the root, and the same warnings).
fn configure(root: &Root, v: Version, name: &str, main: Option<&Path>) -> Result<ConfigChange> {
    let applied = config::apply(root, &v, name, main)?;
    Ok(ConfigChange {
        path: applied.node_path.clone(),
        key: applied.edit.key.dotted(),
        value: name.into(),
        created: applied.created,
        changed: applied.edit.text.is_some(),
        warnings: applied.warnings,
    })
}

fn print(s: &Summary, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(s)?);
        return Ok(());
    }
    println!("bake: root {}", s.root);
    println!("  platform   {} ({})", s.platform, s.platform_source);
    println!(
        "  containerd {} ({})",
        s.containerd_version, s.containerd_version_source
    );
    if let Some(k) = &s.kubernetes_version {
        println!("  kubernetes {k}");
    }
    println!("  name       {} ({})", s.name, s.name_source);
    println!(
        "  image      {} {} ({})",
        s.import.target_media_type, s.import.target, s.image_source
    );
    let i = &s.import;
    if i.unchanged {
        println!(
            "  import     unchanged ({} blobs already present)",
            i.blobs_present
        );
    } else {
        let count = |what: &str| {
            i.records_changed
                .iter()
                .filter(|c| c.starts_with(what))
                .count()
        };
        println!(
            "  import     {} blobs written, {} present; {} content and {} image records new or updated in {}",
            i.blobs_written.len(),
            i.blobs_present,
            count("content "),
            count("image "),
            i.meta_db
        );
    }
    let c = &s.configure;
    println!(
        "  configure  {} {} = {:?} in {}",
        if !c.changed {
            "unchanged:"
        } else if c.created {
            "created"
        } else {
            "set"
        },
        c.key,
        c.value,
        c.path
    );
    for warning in &c.warnings {
        eprintln!("pausebake: warning: {warning}");
    }
    let fails: Vec<&verify::Finding> = s
        .verify
        .findings
        .iter()
        .filter(|f| f.status != verify::Status::Ok)
        .collect();
    if s.verify.ok {
        println!("  verify     ok: a pod sandbox would start here with no network");
    } else {
        println!("  verify     PROBLEMS: CRI would try to pull the sandbox image");
    }
    for f in fails {
        println!("    {:?} {}: {}", f.status, f.check, f.message);
        if let Some(fix) = &f.fix {
            println!("      fix: {fix}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_the_flag_then_kubernetes_then_containerd() {
        let ctd = Version::new(1, 7, 24);
        let k8s = Found {
            version: Version::new(1, 30, 2),
            source: "/var/lib/dpkg/status (kubelet 1.30.2-1.1)".into(),
        };
        let given = [
            "pause:3.9".to_string(),
            "example.invalid/p:1".into(),
            "pause:3.9".into(),
        ];
        assert_eq!(
            choose_names(&given, Some(&k8s), ctd).unwrap(),
            (
                vec![
                    "docker.io/library/pause:3.9".to_string(),
                    "example.invalid/p:1".to_string()
                ],
                "--name".to_string()
            )
        );
        assert_eq!(
            choose_names(&[], Some(&k8s), ctd).unwrap(),
            (
                vec!["registry.k8s.io/pause:3.9".to_string()],
                "the pause of Kubernetes 1.30.2 (/var/lib/dpkg/status (kubelet 1.30.2-1.1))"
                    .to_string()
            )
        );
        assert_eq!(
            choose_names(&[], None, ctd).unwrap(),
            (
                vec!["registry.k8s.io/pause:3.8".to_string()],
                "the default of containerd 1.7.24".to_string()
            )
        );
        assert!(choose_names(&["Bad:Name".to_string()], None, ctd).is_err());
    }
}
