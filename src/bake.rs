//! `bake`: compile, assemble, import, configure and verify in one step, one summary.
//!
//! The choices `bake` makes for a root, each printed with where it came from:
//! - platform: `--platform`, else the root's binaries, else the host's;
//! - containerd version: `--containerd-version`, else the root's package or binary, else the
//!   newest layout pausebake knows (config version 3, `pinned_images.sandbox`): a fresh root
//!   most likely gets a current containerd;
//! - name: the first `--name`, else the pause of the Kubernetes version (`--kubernetes-version`
//!   or found in the root), else the default of that containerd. The config gets that name
//!   byte for byte, so CRI finds it (and 2.x pins it).

use std::process::ExitCode;

use anyhow::{bail, Context, Result};

use crate::cli::{BakeArgs, CompileArgs};
use crate::containerd::store::{self, Spec, Time};
use crate::containerd::verify::{self, Found, Version};
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
    let (ctd, ctd_source) =
        match verify::containerd_version(root, args.target.containerd_version.as_deref())? {
            Some(Found { version, source }) => (version, source),
            None => (
                verify::NEWEST_KNOWN,
                format!(
                    "no containerd in the root: using the newest config layout (containerd {}.x, config version 3)",
                    verify::NEWEST_KNOWN.major
                ),
            ),
        };
    let k8s = verify::kubernetes_version(root, args.kubernetes_version.as_deref())?;
    let (name, name_source) = match (args.names.first(), &k8s) {
        (Some(n), _) => (store::normalize_ref(n)?, "--name".to_string()),
        (None, Some(k)) => (
            verify::pause_ref_for(k.version),
            format!("the pause of Kubernetes {} ({})", k.version, k.source),
        ),
        (None, None) => (
            verify::default_sandbox_image(ctd).to_string(),
            format!("containerd {ctd}'s default sandbox image"),
        ),
    };
    let mut names = vec![name.clone()];
    for n in args.names.iter().skip(1) {
        push_unique(&mut names, store::normalize_ref(n)?);
    }

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
        },
    )?;
    let configure = configure(root, ctd, &name)?;
    let report = verify::audit(
        root,
        &args.target.namespace,
        Some(platform),
        Some(&ctd.to_string()),
        k8s.as_ref().map(|k| k.version.to_string()).as_deref(),
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
        (built.clone(), format!("compiled for {}", archs.join(", ")))
    } else {
        let mut bins = Vec::new();
        for (arch, path) in &args.spec.binary {
            let elf = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            crate::pause::check_elf(&elf, *arch, &path.display().to_string())?;
            bins.push((*arch, elf));
        }
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

/// Sets the sandbox image in the root's config for containerd `v`.
fn configure(root: &Root, v: Version, name: &str) -> Result<ConfigChange> {
    let old = root.read_to_string(store::CONFIG_PATH)?;
    let new = set_sandbox_image(old.as_deref(), v, name)?;
    let setting = verify::sandbox_setting(
        Some(new.as_deref().or(old.as_deref()).unwrap_or_default()),
        v,
    )?;
    if let Some(text) = &new {
        root.create_dir_all("/etc/containerd", 0o755)?;
        root.write_atomic(store::CONFIG_PATH, text.as_bytes(), 0o644)?;
    }
    Ok(ConfigChange {
        path: store::CONFIG_PATH.into(),
        key: setting.key.into(),
        value: name.into(),
        created: old.is_none(),
        changed: new.is_some(),
    })
}

/// The config text with the sandbox image set under the key containerd `v` reads for the
/// file's version, every other line kept; `None` when it already says so. A missing file
/// becomes the native layout of `v` (version 2 for 1.x, 3 for 2.x).
pub fn set_sandbox_image(text: Option<&str>, v: Version, name: &str) -> Result<Option<String>> {
    let mut doc: toml_edit::DocumentMut = match text {
        Some(t) => t
            .parse()
            .with_context(|| format!("parsing {} as TOML", store::CONFIG_PATH))?,
        None => {
            let mut d = toml_edit::DocumentMut::new();
            d["version"] = toml_edit::value(if v.major >= 2 { 3 } else { 2 });
            d
        }
    };
    let version = doc.get("version").and_then(|i| i.as_integer()).unwrap_or(1);
    let path: &[&str] = match (v.major >= 2, version) {
        (_, 1) => &["plugins", "cri", "sandbox_image"],
        (_, 2) => &["plugins", "io.containerd.grpc.v1.cri", "sandbox_image"],
        (true, 3) => &["plugins", "io.containerd.cri.v1.images", "pinned_images", "sandbox"],
        (false, 3) => bail!(
            "configuring {}: containerd {v} does not read a version = 3 config; rewrite it as version = 2 or pass --containerd-version",
            store::CONFIG_PATH
        ),
        (_, n) => bail!(
            "configuring {}: config version {n} is not one containerd {v} reads",
            store::CONFIG_PATH
        ),
    };
    let (last, parents) = path.split_last().expect("a non-empty key path");
    let mut table: &mut dyn toml_edit::TableLike = doc.as_table_mut();
    for key in parents {
        if table.get(key).is_none() {
            let mut t = toml_edit::Table::new();
            // Only the leaf table gets a [header] of its own.
            t.set_implicit(true);
            table.insert(key, toml_edit::Item::Table(t));
        }
        table = table
            .get_mut(key)
            .and_then(|i| i.as_table_like_mut())
            .with_context(|| format!("configuring {}: {key} is not a table", store::CONFIG_PATH))?;
    }
    if table.get(last).and_then(|i| i.as_str()) == Some(name) {
        return Ok(None);
    }
    match table.get_mut(last).and_then(|i| i.as_value_mut()) {
        // Keep the comment and spacing around an existing value.
        Some(existing) => {
            let decor = existing.decor().clone();
            *existing = toml_edit::Value::from(name);
            *existing.decor_mut() = decor;
        }
        None => {
            table.insert(last, toml_edit::value(name));
        }
    }
    Ok(Some(doc.to_string()))
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

    const V: Version = Version::new(2, 1, 9);

    #[test]
    fn a_missing_config_gets_the_native_layout() {
        let t = set_sandbox_image(None, V, "registry.k8s.io/pause:3.10")
            .unwrap()
            .unwrap();
        assert_eq!(
            t,
            "version = 3\n\n[plugins.\"io.containerd.cri.v1.images\".pinned_images]\nsandbox = \"registry.k8s.io/pause:3.10\"\n"
        );
        let t = set_sandbox_image(None, Version::new(1, 7, 24), "registry.k8s.io/pause:3.10")
            .unwrap()
            .unwrap();
        assert_eq!(
            t,
            "version = 2\n\n[plugins.\"io.containerd.grpc.v1.cri\"]\nsandbox_image = \"registry.k8s.io/pause:3.10\"\n"
        );
        // What verify reads back is what was set.
        let s = verify::sandbox_setting(Some(&t), Version::new(1, 7, 24)).unwrap();
        assert_eq!(s.effective, "registry.k8s.io/pause:3.10");
    }

    #[test]
    fn comments_and_other_settings_survive_and_twice_is_once() {
        let before = r#"# managed by the image pipeline
version = 2
root = "/var/lib/containerd"

[plugins."io.containerd.grpc.v1.cri"]
  # the pause image
  sandbox_image = "registry.k8s.io/pause:3.8" # old
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
    SystemdCgroup = true
"#;
        let after = set_sandbox_image(
            Some(before),
            Version::new(1, 7, 24),
            "registry.k8s.io/pause:3.9",
        )
        .unwrap()
        .unwrap();
        assert_eq!(after, before.replace("pause:3.8", "pause:3.9"));
        assert_eq!(
            set_sandbox_image(
                Some(&after),
                Version::new(1, 7, 24),
                "registry.k8s.io/pause:3.9"
            )
            .unwrap(),
            None
        );
    }

    #[test]
    fn version_3_on_1x_is_refused() {
        let err = set_sandbox_image(Some("version = 3\n"), Version::new(1, 6, 20), "x")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("containerd 1.6.20 does not read a version = 3 config"),
            "{err}"
        );
    }
}
