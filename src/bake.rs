//! `bake`: compile, assemble, import, configure and verify in one step, one summary; and the
//! other commands that act on a root (`import`, `configure`, `verify`), each the same pass:
//! inspect the root once, plan, apply (unless `--dry-run`), verify over re-read facts.
//!
//! The choices `bake` makes for a root, each printed with where it came from:
//! - platform: `--platform`, else the root's binaries, else the host's;
//! - containerd version: `--containerd-version`, else the root's binary or package, else the
//!   newest release of the version table: a fresh root most likely gets a current containerd;
//! - name: the first `--name`, else the pause of the Kubernetes version (`--kubernetes-version`
//!   or found in the root), else the default of that containerd. The config gets that name
//!   byte for byte, so CRI finds it (and 2.x pins it).

use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::cli::{
    BakeArgs, CompileArgs, ConfigFileArgs, ConfigureArgs, ContainerdArgs, ImportArgs,
    KubernetesArgs, LiveArgs, PlatformArgs, TargetArgs, VerifyArgs,
};
use crate::containerd::apply::apply;
use crate::containerd::config;
use crate::containerd::effective;
use crate::containerd::inspect::{inspect, inspect_store, Overrides, RootFacts, Sourced};
use crate::containerd::owners::WriteTo;
use crate::containerd::plan::{self, normalized_names, push_unique, Named, Plan};
use crate::containerd::store::{NoManifest, Spec, Time};
use crate::containerd::verify;
use crate::disk::{self, Access};
use crate::image::Image;
use crate::live;
use crate::rootfs::Root;
use crate::trace;

/// Everything `bake` did (or, with `--dry-run`, would do), for the summary and `--json`.
#[derive(Debug, serde::Serialize)]
pub struct Summary {
    pub dry_run: bool,
    #[serde(flatten)]
    pub plan: Plan,
    /// The audit after the change; `None` under `--dry-run`.
    pub verify: Option<verify::Report>,
}

/// The flags that replace facts, from whichever of them a command has.
fn overrides(
    platform: Option<&PlatformArgs>,
    containerd: Option<&ContainerdArgs>,
    kubernetes: Option<&KubernetesArgs>,
    config: Option<&ConfigFileArgs>,
) -> Overrides {
    Overrides {
        platform: platform.and_then(|p| p.platform),
        containerd: containerd.and_then(|c| c.containerd_version),
        kubernetes: kubernetes.and_then(|k| k.kubernetes_version),
        config: config.and_then(|c| c.config.clone()),
        running: None,
    }
}

/// The overrides of `bake` and `verify`.
fn target_overrides(
    target: &TargetArgs,
    kubernetes: &KubernetesArgs,
    config: &ConfigFileArgs,
) -> Overrides {
    overrides(
        Some(&target.platform),
        Some(&target.containerd),
        Some(kubernetes),
        Some(config),
    )
}

/// `pausebake bake`.
pub fn bake(args: &BakeArgs) -> Result<ExitCode> {
    if args.live.trace {
        trace::enable();
    }
    let dialing = dial(
        &args.live,
        args.dry_run.dry_run,
        &args.target.namespace.namespace,
    );
    // An --archive is read (and validated) before the root or a disk image is touched.
    let archive = args
        .archive
        .as_deref()
        .map(crate::archive::read)
        .transpose()?;
    let access = Access::unless_dry_run(args.dry_run.dry_run);
    disk::with_root(&args.target.root, access, |root| {
        bake_in(args, archive, dialing, root)
    })
}

fn bake_in(
    args: &BakeArgs,
    archive: Option<Image>,
    dialing: live::Dialing,
    root: Root,
) -> Result<ExitCode> {
    let mut over = target_overrides(&args.target, &args.kubernetes, &args.config);
    let mut facts = inspect(&root, &over)?;
    trace::step(format_args!("inspected the root"));
    let mut live = live::choose(&facts, dialing, args.live.offline)?;
    if running(&mut over, live.as_ref()) {
        facts = inspect(&root, &over)?;
    }
    let (mut names, named) = choose_names(&args.names, &facts)?;
    // a verbatim record of an unqualified reference (`choose_names`) names no image content
    let qualified: Vec<String> = names
        .iter()
        .filter(|n| crate::reference::check_qualified(n).is_ok())
        .cloned()
        .collect();
    let (image, image_source) = image_for(args, archive, &facts, &qualified)?;
    for n in &image.names {
        push_unique(&mut names, crate::reference::normalize(n)?);
    }
    check_digests(&names, &image)?;
    probe(&mut facts, &image)?;
    let req = Spec {
        names,
        namespace: args.target.namespace.namespace.clone(),
        platform: Some(facts.platform.value),
        pin: !args.no_pin,
        time: Time::for_records(args.spec.epoch.source_date_epoch),
    };
    let fix = match (
        args.archive.is_some(),
        args.target.platform.platform.is_some(),
    ) {
        (true, false) => {
            "pass --archive with an image for the root's platform, or --platform with one of \
             the image's if the root's (read from its binaries) is not the one meant"
        }
        (true, true) => "pass --archive with an image for that platform, or another --platform",
        (false, _) => "leave out --arch and --binary to build for the root's architecture",
    };
    let mut plan = plan::plan(&facts, Some(named), Some((&image, image_source, &req)))
        .map_err(|e| with_fix(e, fix))?;
    trace::step(format_args!("planned"));
    let verify = if args.dry_run.dry_run {
        through(&mut plan, &image, live.as_mut())?;
        None
    } else {
        carry_out(&mut plan, Some(&image), &root, live.as_mut())?;
        trace::step(format_args!("applied"));
        // Re-read: verify judges the root as it is now, each fact with its true source.
        let after = inspect(&root, &over)?;
        let report = match live.as_mut() {
            Some(conn) => live::verify(conn, &after, &req.namespace, false)?,
            None => verify::audit(&after, &req.namespace)?,
        };
        trace::step(format_args!("verified"));
        Some(report)
    };
    let summary = Summary {
        dry_run: args.dry_run.dry_run,
        plan,
        verify,
    };
    print(&summary, args.output.json)?;
    Ok(match &summary.verify {
        Some(report) if !report.ok => ExitCode::from(3),
        _ => ExitCode::SUCCESS,
    })
}

/// An image without a manifest for the root's platform, with the `fix` the command's own
/// flags allow (each command has other ones); any other error as it is.
fn with_fix(err: anyhow::Error, fix: &str) -> anyhow::Error {
    match err.downcast_ref::<NoManifest>() {
        Some(missing) => anyhow::anyhow!("{missing}; {fix}"),
        None => err,
    }
}

/// A running containerd, when the command goes through one, is the source of the containerd
/// version (what it runs beats what its files suggest; `--containerd-version` still beats
/// it), and so of how its config files merge. Whether that changed the facts to inspect.
fn running(over: &mut Overrides, live: Option<&live::Connection>) -> bool {
    let Some(conn) = live else { return false };
    over.running = Some(live::version_fact(conn));
    over.containerd.is_none()
}

/// Starts connecting to a given `--address` ([`live::Dialing`], finished by
/// [`live::choose`]): a real run asks for its lease while connecting, a dry run for none.
fn dial(live: &LiveArgs, dry_run: bool, namespace: &str) -> live::Dialing {
    live::Dialing::start(live.address.as_deref(), (!dry_run).then_some(namespace))
}

/// The plan's import as the running containerd would take it (for `--dry-run`): what to
/// write, label and point, decided by what that containerd answers to read-only calls, not
/// by the snapshot of a root's `meta.db` the plan was made from (the daemon's root may be
/// another one, or have changed since). Creates nothing there: no lease, blob, record or
/// label. Without a running containerd the plan stays as made.
fn through(plan: &mut Plan, image: &Image, live: Option<&mut live::Connection>) -> Result<()> {
    if let (Some(conn), Some(store)) = (live, plan.import.as_mut()) {
        *store = live::predict(store, image, conn)?;
    }
    Ok(())
}

/// The apply: offline into the root's files, or, with a running containerd, the import
/// through its API (the plan's import becomes what containerd answered) and the config
/// edit into the files as offline.
fn carry_out(
    plan: &mut Plan,
    image: Option<&Image>,
    root: &Root,
    live: Option<&mut live::Connection>,
) -> Result<()> {
    let Some(conn) = live else {
        return apply(plan, image, root);
    };
    if let Some(store) = &plan.import {
        let image = image.context("applying an import plan: no image given")?;
        let done = live::apply(store, image, conn)?;
        plan.import = Some(done);
    }
    // The config part alone (the plan without its import, not a copy of it).
    let import = plan.import.take();
    let applied = apply(plan, None, root);
    plan.import = import;
    applied?;
    trace::step(format_args!("applied the config part of the plan"));
    Ok(())
}

/// Refuses a name whose digest is not the image's own ([`crate::reference::check_digest`]),
/// before anything is written.
fn check_digests(names: &[String], image: &Image) -> Result<()> {
    for n in names {
        crate::reference::check_digest(n, image.target.digest().as_ref())?;
    }
    Ok(())
}

/// `configure`: a name that pins a digest must be the digest of the image the root's store
/// records under that name, or under its tag when it has one too (`bake` and `import` check
/// the image they write; `verify` fails a record that breaks it).
fn check_recorded_digest(facts: &RootFacts, requested: &str, name: &str) -> Result<()> {
    let Some(digest) = crate::reference::digest(requested) else {
        return Ok(());
    };
    let mut records = vec![name.to_string()];
    if crate::reference::has_tag_and_digest(requested) {
        let tagged = &requested[..requested.len() - digest.len() - 1];
        records.push(crate::reference::normalize(tagged)?);
    }
    for record in records {
        let path: [&[u8]; 5] = [b"v1", b"k8s.io", b"images", record.as_bytes(), b"target"];
        if let Some(d) = facts
            .meta
            .tree
            .bucket_at(&path)
            .and_then(|t| t.value(b"digest"))
        {
            crate::reference::check_digest(name, &String::from_utf8_lossy(d))
                .with_context(|| format!("checking {requested} against the record {record}"))?;
        }
    }
    Ok(())
}

/// Where a name from `flag` comes from, saying so when a tag and a digest were given: the
/// name is written digest-only, as containerd records and looks it up.
fn source_of(flag: &str, reference: &str) -> String {
    if crate::reference::has_tag_and_digest(reference) {
        format!(
            "{flag}, written without its tag as containerd normalizes it: containerd 2.3.0 to \
             2.3.3 would not find a tag-and-digest reference named verbatim"
        )
    } else {
        flag.to_string()
    }
}

/// Records what the root holds of each of the image's blobs, for the plan.
fn probe(facts: &mut RootFacts, image: &Image) -> Result<()> {
    facts.probe_blobs(image.blobs.iter().map(|(d, b)| (d.as_str(), b.as_slice())))
}

/// The image records to write, the first being the one the config names, and why that one:
/// the first `--name`, else the pause of the Kubernetes version, else containerd's default.
/// All normalized as CRI looks them up.
pub fn choose_names(given: &[String], facts: &RootFacts) -> Result<(Vec<String>, Named)> {
    let asked = asked(facts);
    // an owner that fixes the name keeps it first; every --name is then an extra record
    let settable = !matches!(facts.owner.owner.row.write, WriteTo::Nowhere(_));
    // what the node will ask for once the name is chosen, as its configuration spells it
    let (first, why, will_ask) = match (given.first().filter(|_| settable), &asked) {
        (Some(given), _) => {
            let n = crate::reference::normalize(given)?;
            // an owner that names its setting its own way (k3s's system default registry)
            // asks for that name: it is the one written and recorded
            let will = facts.owner.asks.as_ref().map(|a| a.for_setting(&n));
            let named = will
                .as_deref()
                .map(crate::reference::normalize)
                .transpose()?
                .unwrap_or_else(|| n.clone());
            let why = if named == n {
                source_of("--name", given)
            } else {
                format!(
                    "--name {n}, as {} names it ({})",
                    facts.owner.owner.row.name,
                    facts.owner.asks.as_ref().map_or("", |a| a.source.as_str())
                )
            };
            (named, why, will)
        }
        (None, Some(a)) => (
            crate::reference::normalize(&a.value)?,
            format!("what {} asks for: {}", facts.owner.owner.row.name, a.source),
            Some(a.value.clone()),
        ),
        (None, None) => {
            let (first, why) =
                config::default_image(facts.kubernetes.as_ref(), facts.containerd.value)?;
            (first, why, None)
        }
    };
    let mut names = vec![first.clone()];
    // containerd 2.3.0 to 2.3.3 look the configured reference up verbatim
    if let Some(verbatim) = will_ask.and_then(|a| crate::reference::verbatim_companion(&a, &names))
    {
        names.push(verbatim);
    }
    let extra = if settable { 1 } else { 0 };
    for n in normalized_names(given.iter().skip(extra))? {
        push_unique(&mut names, n);
    }
    Ok((
        names,
        Named {
            name: first,
            name_source: why,
        },
    ))
}

/// The reference the node will ask for whatever pausebake names: the owner's own setting,
/// else, when the owner leaves pausebake nowhere to write, what containerd's config reads.
fn asked(facts: &RootFacts) -> Option<Sourced<String>> {
    if let Some(a) = &facts.owner.asks {
        return Some(Sourced {
            value: a.value.clone(),
            source: a.source.clone(),
        });
    }
    let eff = &facts.config.effective;
    matches!(facts.owner.owner.row.write, WriteTo::Nowhere(_)).then(|| Sourced {
        value: eff.image().to_string(),
        source: eff.describe(),
    })
}

/// The image to bake: `archive` (`--archive`, read before the root was opened), else one
/// assembled from `--binary` files or the root architecture's pause (built in, or compiled
/// with `--compile`).
fn image_for(
    args: &BakeArgs,
    archive: Option<Image>,
    facts: &RootFacts,
    names: &[String],
) -> Result<(Image, String)> {
    if let (Some(image), Some(path)) = (archive, &args.archive) {
        return Ok((image, format!("archive {}", path.display())));
    }
    let (binaries, source) = pause_binaries(args, facts)?;
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

/// Pause programs by architecture.
type Binaries = Vec<(crate::platform::Arch, Vec<u8>)>;

/// Where the pause programs come from: `--binary` files, else a compile for `--arch` or the
/// root's architecture. The one step that knows how pause bytes are made.
fn pause_binaries(args: &BakeArgs, facts: &RootFacts) -> Result<(Binaries, String)> {
    if !args.spec.binary.is_empty() {
        let bins = crate::pause::read_binaries(&args.spec.binary)?;
        let list: Vec<String> = args
            .spec
            .binary
            .iter()
            .map(|(a, p)| format!("{a}={}", p.display()))
            .collect();
        return Ok((bins, format!("--binary {}", list.join(" "))));
    }
    let arch = if args.compile.arch.is_empty() {
        vec![facts.platform.value.arch]
    } else {
        args.compile.arch.clone()
    };
    let compile = CompileArgs {
        arch,
        ..args.compile.clone()
    };
    let built = crate::pause::programs(&compile)?;
    let archs: Vec<&str> = built.iter().map(|(a, _)| a.name()).collect();
    let how = if compile.compiles() {
        "compiled"
    } else {
        "built in"
    };
    Ok((built, format!("{how} for {}", archs.join(", "))))
}

fn print(s: &Summary, json: bool) -> Result<()> {
    if json {
        crate::output::print_json(s)?;
        return Ok(());
    }
    if s.dry_run {
        print!("bake --dry-run (nothing written): {}", s.plan);
        return Ok(());
    }
    print_summary(&s.plan);
    if let Some(report) = &s.verify {
        print_verify(report);
    }
    Ok(())
}

/// The summary of a bake that was carried out: one line per step.
fn print_summary(p: &Plan) {
    let f = &p.facts;
    println!("bake: root {}", f.root);
    println!("  platform   {} ({})", f.platform, f.platform_source);
    println!(
        "  containerd {} ({})",
        f.containerd_version, f.containerd_version_source
    );
    if let Some(k) = &f.kubernetes_version {
        println!("  kubernetes {k}");
    }
    println!(
        "  owner      {}: store {}, socket {}",
        f.owner, f.containerd_root, f.containerd_address
    );
    if let Some(n) = &p.named {
        println!("  name       {} ({})", n.name, n.name_source);
    }
    if let Some(i) = &p.import {
        println!(
            "  image      {} {} ({})",
            i.target_media_type,
            i.target,
            p.image_source.as_deref().unwrap_or_default()
        );
        println!("  import     {}", i.counts(true));
        println!("  records    {}", i.records_line());
    }
    if let Some(c) = &p.configure {
        println!("  configure  {}", c.line(true));
        if let Some(note) = &c.note {
            println!("    {note}");
        }
        for warning in &c.warnings {
            eprintln!("pausebake: warning: {warning}");
        }
    }
    for e in &p.enable_cri {
        println!("  enable CRI {}", e.line(true));
    }
}

fn print_verify(report: &verify::Report) {
    if report.ok {
        println!("  verify     ok: a pod sandbox would start here with no network");
    } else {
        println!("  verify     PROBLEMS: CRI would try to pull the sandbox image");
    }
    for f in report
        .findings
        .iter()
        .filter(|f| f.status != verify::Status::Ok)
    {
        let message = crate::output::one_line(&f.message);
        println!("    {} {}: {message}", f.status.tag(), f.check);
        if let Some(fix) = &f.fix {
            println!("      fix: {fix}");
        }
    }
}

// --- import, configure, verify ----------------------------------------------------------

/// `pausebake import`.
pub fn import(args: &ImportArgs) -> Result<ExitCode> {
    if args.live.trace {
        trace::enable();
    }
    let dialing = dial(&args.live, args.dry_run.dry_run, &args.namespace.namespace);
    // Everything is validated while reading, before the root (or a disk image) is touched.
    let image = crate::archive::read(&args.archive)?;
    trace::step(format_args!("read {}", args.archive.display()));
    let access = Access::unless_dry_run(args.dry_run.dry_run);
    disk::with_root(&args.root, access, |root| {
        import_in(args, image, dialing, root)
    })
}

fn import_in(
    args: &ImportArgs,
    image: Image,
    dialing: live::Dialing,
    root: Root,
) -> Result<ExitCode> {
    let mut names = normalized_names(image.names.iter().chain(&args.names))?;
    check_digests(&names, &image)?;
    // The root's platform decides a new meta.db's byte order even when every manifest is
    // imported.
    let mut facts = inspect_store(&root, &overrides(Some(&args.platform), None, None, None))?;
    if let Some(verbatim) =
        crate::reference::verbatim_companion(facts.config.effective.image(), &names)
    {
        // the config names it unnormalized: containerd 2.3.0 to 2.3.3 look that up verbatim
        names.push(verbatim);
    }
    probe(&mut facts, &image)?;
    trace::step(format_args!("inspected the root"));
    let (platform, platform_source) = if args.all_platforms {
        (None, "--all-platforms".to_string())
    } else {
        (Some(facts.platform.value), facts.platform.source.clone())
    };
    let req = Spec {
        names,
        namespace: args.namespace.namespace.clone(),
        platform,
        pin: !args.no_pin,
        time: Time::for_records(args.epoch.source_date_epoch),
    };
    let mut live = live::choose(&facts, dialing, args.live.offline)?;
    let source = format!("archive {}", args.archive.display());
    let fix = if args.platform.platform.is_some() {
        "pass --platform with one of the image's platforms, or --all-platforms"
    } else {
        "pass --platform with one of the image's platforms (the root's is read from its \
         binaries), or --all-platforms"
    };
    let mut plan =
        plan::plan(&facts, None, Some((&image, source, &req))).map_err(|e| with_fix(e, fix))?;
    trace::step(format_args!("planned"));
    if args.dry_run.dry_run {
        through(&mut plan, &image, live.as_mut())?;
    } else {
        carry_out(&mut plan, Some(&image), &root, live.as_mut())?;
    }
    trace::step(format_args!("applied"));
    let store = plan.import.as_ref().expect("an import plan imports");
    if args.output.json {
        crate::output::print_json(&ImportReport {
            dry_run: args.dry_run.dry_run,
            root: &plan.facts.root,
            platform: platform.map(|p| p.to_string()),
            platform_source: &platform_source,
            image_source: plan.image_source.as_deref().unwrap_or_default(),
            import: store,
        })?;
    } else if args.dry_run.dry_run {
        print!("import --dry-run (nothing written): {plan}");
    } else {
        print_import(store, &platform_source);
    }
    Ok(ExitCode::SUCCESS)
}

/// What `import --json` prints, with `--dry-run` or without: the same keys, `import` being
/// what was (or would be) written. No containerd version: an import reads none.
#[derive(serde::Serialize)]
struct ImportReport<'a> {
    dry_run: bool,
    root: &'a str,
    /// The platform whose manifests are imported; `None` under `--all-platforms`.
    platform: Option<String>,
    platform_source: &'a str,
    image_source: &'a str,
    import: &'a plan::StorePlan,
}

/// The text form of an import that was carried out.
fn print_import(r: &plan::StorePlan, platform_source: &str) {
    println!(
        "import: {} {} into {}",
        r.target_media_type, r.target, r.meta_db
    );
    for m in &r.manifests {
        println!("  manifest {m} (platform: {platform_source})");
    }
    for n in &r.names {
        println!(
            "  image {n} in {}{}",
            r.namespace,
            if r.pinned { ", pinned" } else { "" }
        );
    }
    if r.unchanged {
        println!("  unchanged: every blob and record was already there");
        return;
    }
    println!(
        "  {} blobs written, {} already present",
        r.blobs_written.len(),
        r.blobs_present
    );
    for c in &r.records_changed {
        println!("  {c}");
    }
}

/// `pausebake configure`.
pub fn configure(args: &ConfigureArgs) -> Result<ExitCode> {
    let access = Access::unless_dry_run(args.dry_run.dry_run);
    disk::with_root(&args.root, access, |root| configure_in(args, root))
}

fn configure_in(args: &ConfigureArgs, root: Root) -> Result<ExitCode> {
    let mut over = overrides(
        None,
        Some(&args.containerd),
        Some(&args.kubernetes),
        Some(&args.config),
    );
    // With --address, the running containerd says which version merges the files.
    let conn = args.address.as_deref().map(live::connect).transpose()?;
    running(&mut over, conn.as_ref());
    // A root without containerd gets the newest known, as in `bake`, `import` and `verify`.
    let facts = inspect(&root, &over)?;
    let (requested, why) = match &args.sandbox_image {
        Some(image) => (image.clone(), source_of("--sandbox-image", image)),
        None => config::default_image(facts.kubernetes.as_ref(), facts.containerd.value)?,
    };
    let image = crate::reference::normalize(&requested)?;
    check_recorded_digest(&facts, &requested, &image)?;
    let named = Named {
        name: image.clone(),
        name_source: why.clone(),
    };
    let plan = plan::plan(&facts, Some(named), None)?;
    if !args.dry_run.dry_run {
        apply(&plan, None, &root)?;
    }
    // The files are as planned; now the truth about the daemon that runs (never restarted).
    let c = plan
        .configure
        .as_ref()
        .expect("a configure plan configures");
    let running = match &conn {
        Some(conn) => Some(running_after(args, conn, &image, &root, c)?),
        None => None,
    };
    let ctd = &facts.containerd;
    if args.output.json {
        let doc = serde_json::json!({
            "dry_run": args.dry_run.dry_run,
            "path": c.path,
            "containerd_version": ctd.value.to_string(),
            "containerd_version_from": ctd.source,
            "config_version": c.config_version,
            "key": c.key,
            "old": c.old,
            "new": image,
            "requested": requested,
            "why": why,
            "changed": c.changed,
            "created": c.created,
            "warnings": c.warnings,
            "main_config": c.main_config,
            "main_config_why": c.main_config_why,
            "files": c.files,
            "effective": c.effective,
            "enable_cri": plan.enable_cri,
            "note": c.note,
            "running": running,
        });
        crate::output::print_json(&doc)?;
        return Ok(ExitCode::SUCCESS);
    }
    if image != requested {
        println!("normalized {requested:?} to {image:?} (the name CRI looks up)");
    }
    let what = format!("{} = {image:?}", c.key);
    let containerd = if facts.containerd_assumed {
        ctd.source.clone()
    } else {
        format!("containerd {} from {}", ctd.value, ctd.source)
    };
    let context = format!(
        "{containerd}, config version {}; image: {why}",
        c.config_version
    );
    let path = &c.path;
    let prefix = if args.dry_run.dry_run {
        "would have "
    } else {
        ""
    };
    match (c.changed, c.created, &c.old) {
        (false, _, _) => println!("unchanged: {path} already sets {what} ({context})"),
        (true, true, _) => println!("{prefix}created {path} with {what} ({context})"),
        (true, false, Some(old)) => {
            println!("{prefix}changed {path}: {what}, was {old:?} ({context})")
        }
        (true, false, None) => println!("{prefix}changed {path}: added {what} ({context})"),
    }
    // the plain case (the default file, no imports) needs no extra line
    if c.main_config != effective::DEFAULT_MAIN || c.files.len() > 1 {
        println!(
            "main config {} ({}); containerd loads {}",
            c.main_config,
            c.main_config_why,
            c.files.join(", ")
        );
    }
    for e in &plan.enable_cri {
        println!("{}", e.line(!args.dry_run.dry_run));
    }
    if let Some(note) = &c.note {
        println!("{note}");
    }
    if let Some(r) = &running {
        println!("{}", r.message);
    }
    for warning in &c.warnings {
        eprintln!("pausebake: warning: {warning}");
    }
    Ok(ExitCode::SUCCESS)
}

/// What the running containerd behind `conn` makes of the configured `image`, after a
/// restart when `--restart` asks for one. Under `--dry-run` the files are as before the
/// planned edit, so a containerd judged by its files (2.x) is told about the edit to come.
fn running_after(
    args: &ConfigureArgs,
    conn: &live::Connection,
    image: &str,
    root: &Root,
    c: &config::ConfigPlan,
) -> Result<live::RunningNote> {
    let mut note = live::running_note(conn, image, root, &c.files)?;
    if args.dry_run.dry_run && c.changed && note.running.is_none() {
        note.restart_needed = Some(true);
        note.message = format!(
            "{}; the planned edit of {} needs a restart of containerd to take effect",
            note.message, c.path
        );
    }
    match &args.restart {
        Some(command) => live::restart(
            conn,
            command,
            image,
            root,
            &c.files,
            note,
            args.dry_run.dry_run,
        ),
        None => Ok(note),
    }
}

/// `pausebake verify`: the offline rules over the root's facts, or with `--address` the live
/// rules asked of the running containerd (config files still read from the root).
pub fn verify(args: &VerifyArgs) -> Result<ExitCode> {
    disk::with_root(&args.target.root, Access::ReadOnly, |root| {
        verify_in(args, root)
    })
}

fn verify_in(args: &VerifyArgs, root: Root) -> Result<ExitCode> {
    let mut over = target_overrides(&args.target, &args.kubernetes, &args.config);
    let namespace = &args.target.namespace.namespace;
    let report = match &args.address {
        Some(address) => {
            let mut conn = live::connect(address)?;
            running(&mut over, Some(&conn));
            live::verify(&mut conn, &inspect(&root, &over)?, namespace, args.sandbox)?
        }
        None => verify::audit(&inspect(&root, &over)?, namespace)?,
    };
    verify::print(&report, args.output.json)?;
    Ok(if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::containerd::inspect::Sourced;
    use crate::containerd::versions::Version;

    #[test]
    fn names_come_from_the_flag_then_kubernetes_then_containerd() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path()).unwrap();
        let mut facts = inspect(&root, &Overrides::default()).unwrap();
        facts.containerd = Sourced {
            value: Version::new(1, 7, 24),
            source: "test".into(),
        };
        facts.kubernetes = Some(Sourced {
            value: Version::new(1, 30, 2),
            source: "/var/lib/dpkg/status (kubelet 1.30.2-1.1)".into(),
        });
        let given = [
            "pause:3.9".to_string(),
            "example.invalid/p:1".into(),
            "pause:3.9".into(),
        ];
        let (names, named) = choose_names(&given, &facts).unwrap();
        assert_eq!(
            (names, named.name_source.as_str()),
            (
                vec![
                    "docker.io/library/pause:3.9".to_string(),
                    "example.invalid/p:1".to_string()
                ],
                "--name"
            )
        );
        let (names, named) = choose_names(&[], &facts).unwrap();
        assert_eq!(names, ["registry.k8s.io/pause:3.9"]);
        assert_eq!(
            named.name_source,
            "the pause of Kubernetes 1.30.2 (/var/lib/dpkg/status (kubelet 1.30.2-1.1))"
        );
        facts.kubernetes = None;
        let (names, named) = choose_names(&[], &facts).unwrap();
        assert_eq!(names, ["registry.k8s.io/pause:3.8"]);
        assert_eq!(named.name_source, "the default of containerd 1.7.24");
        assert!(choose_names(&["Bad:Name".to_string()], &facts).is_err());
    }
}
