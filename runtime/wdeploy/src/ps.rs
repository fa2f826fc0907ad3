//! `ps`, `ps:scale`, `restart`, `ps:wait`, `ps:stop`, `run`, `logs`.

use crate::session::{self, AppArg, ShowArgs};
use anyhow::{Context, bail};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use wdeploy_api::live::{HEARTBEAT, Lines, Next};
use wdeploy_api::wire::{DynoInfo, EXIT_MARKER, HEARTBEAT_MARKER, RunRequest};
use wdeploy_core::{Formation, LogSource, ProcessType, dyno};

pub fn ps(args: ShowArgs) -> anyhow::Result<()> {
    let app = args.app.resolve()?;
    let dynos = session::client()?.dynos(&app)?;
    if args.json.printed(&dynos)? {
        return Ok(());
    }
    if dynos.is_empty() {
        println!("No dynos on {app}");
    }
    // One-off dynos (`run.N`, `release.N`) first, each with its own command, as Heroku
    // lists them; then the formation by process type, under the type's command.
    let (one_offs, formation): (Vec<_>, Vec<_>) = dynos
        .iter()
        .partition(|d| dyno::is_one_off(&d.name, &d.process_type));
    if !one_offs.is_empty() {
        println!("=== run: one-off processes ({})", one_offs.len());
        for d in &one_offs {
            println!("{}: {}", dyno_line(d), d.command);
        }
    }
    let mut last_type: Option<&ProcessType> = None;
    for d in &formation {
        if last_type != Some(&d.process_type) {
            let count = formation
                .iter()
                .filter(|o| o.process_type == d.process_type)
                .count();
            println!("=== {}: `{}` ({count})", d.process_type, d.command);
            last_type = Some(&d.process_type);
        }
        println!("{}", dyno_line(d));
    }
    Ok(())
}

/// `web.1: up 2026/11/28 04:19:29 +0000 (~ 3m ago) v2 on a`, and when a crashed dyno
/// starts again.
fn dyno_line(d: &DynoInfo) -> String {
    let node = d
        .node
        .as_deref()
        .map_or(String::new(), |n| format!(" on {n}"));
    let next = d.next_start.map_or(String::new(), |at| {
        format!(", next start at {}", crate::when::soon(at))
    });
    format!(
        "{}: {} {} v{}{node}{next}",
        d.name,
        d.state,
        crate::when::moment(d.since),
        d.release
    )
}

#[derive(Debug, clap::Args)]
pub struct ScaleArgs {
    #[command(flatten)]
    pub app: AppArg,
    /// TYPE=N pairs, like web=3 worker=0; TYPE+N or TYPE-N changes the count by N;
    /// none: show the formation
    pub pairs: Vec<String>,
}

/// One `ps:scale` argument: a process type and how its count changes.
#[derive(Debug, PartialEq)]
struct Step {
    process_type: ProcessType,
    change: Change,
}

#[derive(Debug, PartialEq)]
enum Change {
    To(u32),
    Up(u32),
    Down(u32),
}

impl Step {
    /// `web=3`, `web+1` or `web-2`, as Heroku's `ps:scale` takes them (a type's name may
    /// hold `-` itself: `my-worker-1`).
    fn parse(pair: &str) -> Option<Step> {
        let number = |n: &str| n.parse::<u32>().ok();
        let (process_type, change) = if let Some((t, n)) = pair.split_once('=') {
            (t, Change::To(number(n)?))
        } else if let Some((t, n)) = pair.rsplit_once('+') {
            (t, Change::Up(number(n)?))
        } else {
            let (t, n) = pair.rsplit_once('-')?;
            (t, Change::Down(number(n)?))
        };
        Some(Step {
            process_type: process_type.parse().ok()?,
            change,
        })
    }

    fn is_relative(&self) -> bool {
        !matches!(self.change, Change::To(_))
    }

    /// The count this step asks for, from the count the formation has now.
    fn quantity(&self, now: u32) -> anyhow::Result<u32> {
        match self.change {
            Change::To(n) => Ok(n),
            Change::Up(n) => Ok(now.saturating_add(n)),
            Change::Down(n) => now.checked_sub(n).with_context(|| {
                format!(
                    "{}-{n}: the formation has {now} {} dynos",
                    self.process_type, self.process_type
                )
            }),
        }
    }
}

pub fn scale(args: ScaleArgs) -> anyhow::Result<()> {
    let app = args.app.resolve()?;
    let mut steps = Vec::new();
    for pair in &args.pairs {
        let Some(step) = Step::parse(pair) else {
            bail!("`{pair}` is not TYPE=N, TYPE+N or TYPE-N (like web=2, worker+1)");
        };
        steps.push(step);
    }
    let client = session::client()?;
    if steps.is_empty() {
        // Every process type of the current release, as the host lists them.
        let formation = client.formation(&app)?;
        match formation.is_empty() {
            true => println!("{app} has no dynos to scale yet: `wdeploy push` deploys it"),
            false => println!("{}", formation.summary()),
        }
        return Ok(());
    }
    // Read only when a step is relative. Two people scaling by +1 at one moment can both
    // read 1 and both ask for 2, as with Heroku's CLI.
    let now = match steps.iter().any(Step::is_relative) {
        true => client.formation(&app)?,
        false => Formation::new(),
    };
    let mut patch = Formation::new();
    for step in &steps {
        let n = step.quantity(now.quantity(&step.process_type))?;
        patch.set(step.process_type.clone(), n);
    }
    let formation = client.scale(&app, &patch)?;
    println!("Scaled {app} to {}", formation.summary());
    Ok(())
}

#[derive(Debug, clap::Args)]
pub struct RestartArgs {
    #[command(flatten)]
    pub app: AppArg,
    /// One dyno (web.1), or every dyno of a process type (web); default: all
    pub dyno: Option<String>,
}

pub fn restart(args: RestartArgs) -> anyhow::Result<()> {
    let app = args.app.resolve()?;
    session::client()?.restart(&app, args.dyno.as_deref())?;
    match args.dyno.as_deref() {
        None => println!("Restarted all dynos of {app}"),
        Some(process_type) if dyno::is_type_selector(process_type) => {
            println!("Restarted the {process_type} dynos of {app}")
        }
        Some(one) => println!("Restarted {one} of {app}"),
    }
    Ok(())
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub app: AppArg,
    /// The process type to run (its component), then arguments (after `--` when they
    /// start with `-`)
    #[arg(required = true)]
    pub command: Vec<String>,
    /// Stop the dyno after this many seconds (the host's one-off limit applies anyway)
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<u64>,
    /// Set KEY=VALUE in this dyno's environment only, over the app's config vars; several
    /// at once split by `;` as on Heroku (`-e "A=1;B=2"`), or `-e` again
    #[arg(short, long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Send this command's stdin (a pipe, a file, the terminal) to the dyno's; its end
    /// (Ctrl-D) is the end of the dyno's input. Without it the dyno's stdin stays open
    /// and empty
    #[arg(short = 'i', long)]
    pub stdin: bool,
}

/// Streams the one-off dyno's output; returns its exit status. The dyno is attached:
/// interrupting this stops it.
///
/// A host gone without a word is noticed by its missing heartbeats: the dyno, attached
/// to this connection, stops on the host once it finds the connection dead.
pub fn run(args: RunArgs) -> anyhow::Result<i32> {
    let with_input = args.stdin;
    let (client, app, stream) = start(args, false)?;
    if with_input {
        let Some(dyno) = stream.dyno.clone() else {
            // Leaving drops the stream, and the dyno, attached to it, stops.
            bail!(
                "the host cannot send a one-off its input (its wdeploy is older than this \
                 CLI): the dyno was stopped; run it without --stdin"
            );
        };
        // On a thread of its own: reading a terminal blocks until a line is typed. The
        // process ends with the dyno whatever this thread waits on.
        std::thread::spawn(move || {
            if let Err(e) = client.send_input(&app, &dyno, std::io::stdin()) {
                eprintln!("wdeploy: the input did not all reach {dyno}: {e}");
            }
        });
    }
    let lines = Lines::new(stream, HEARTBEAT_MARKER);
    let mut out = std::io::stdout();
    loop {
        match lines.next() {
            Next::Line(line) => {
                if let Some(code) = line.strip_prefix(EXIT_MARKER) {
                    return code.trim().parse().context("bad exit status from the host");
                }
                writeln!(out, "{line}")?;
                out.flush()?;
            }
            Next::Beat => {}
            Next::Broke(e) => bail!("the connection to the host broke: {e}"),
            Next::Ended => bail!("the host ended the stream without an exit status"),
            Next::Silent(why) => {
                bail!("{why}: the connection is lost, and the dyno, attached to it, stops with it")
            }
        }
    }
}

/// `run:detached`: starts the one-off dyno and returns; its output goes to the log.
#[derive(Debug, clap::Args)]
pub struct RunDetachedArgs {
    #[command(flatten)]
    pub run: RunArgs,
    /// Then follow the dyno's lines in the log stream, as `logs --tail --dyno NAME` does
    /// (Ctrl-C stops following, never the dyno)
    #[arg(short, long)]
    pub tail: bool,
}

pub fn run_detached(args: RunDetachedArgs) -> anyhow::Result<()> {
    if args.run.stdin {
        bail!("a detached one-off reads no input: `wdeploy run --stdin` runs it attached");
    }
    let (client, app, stream) = start(args.run, true)?;
    let mut out = std::io::stdout();
    for line in BufReader::new(stream.reader).lines() {
        writeln!(out, "{}", line.context("the host closed the stream")?)?;
    }
    if !args.tail {
        return Ok(());
    }
    let dyno = stream
        .dyno
        .context("the host did not name the dyno (its wdeploy is older than this CLI)")?;
    // All the dyno's history: it may have printed before this connects.
    let open = |lines| {
        let source = None;
        client.logs(&app, lines, true, Some(&dyno), source, Some(HEARTBEAT))
    };
    crate::tail::follow(wdeploy_host::BUFFER_LINES, open, &mut out)
}

/// Starts the one-off: the client and app it was started with, and its stream.
fn start(
    args: RunArgs,
    detached: bool,
) -> anyhow::Result<(wdeploy_api::Client, String, wdeploy_api::LiveStream)> {
    let app = args.app.resolve()?;
    let mut command = args.command.into_iter();
    let process_type = command.next().context("nothing to run")?;
    let process_type: ProcessType = process_type.parse()?;
    let client = session::client()?;
    let stream = client.run(
        &app,
        &RunRequest {
            process_type,
            args: command.collect(),
            time_to_live: args.timeout,
            detached,
            env: env_pairs(&args.env)?,
            heartbeat: (!detached).then_some(HEARTBEAT.as_secs()),
            stdin: args.stdin,
        },
    )?;
    Ok((client, app, stream))
}

/// `-e` values: `KEY=VALUE` pairs, several in one split by `;`; a later one wins.
fn env_pairs(given: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    let mut env = BTreeMap::new();
    for pair in given
        .iter()
        .flat_map(|g| g.split(';'))
        .filter(|p| !p.is_empty())
    {
        let Some((key, value)) = pair.split_once('=') else {
            bail!("`{pair}` is not KEY=VALUE (after -e)");
        };
        env.insert(key.to_string(), value.to_string());
    }
    Ok(env)
}

#[derive(Debug, clap::Args)]
pub struct StopArgs {
    #[command(flatten)]
    pub app: AppArg,
    /// The one-off dyno to stop (run.1002)
    pub dyno: String,
}

/// `ps:stop run.N`: stops a one-off dyno, on whichever node runs it.
pub fn stop(args: StopArgs) -> anyhow::Result<()> {
    let app = args.app.resolve()?;
    session::client()?.stop_dyno(&app, &args.dyno)?;
    println!("Stopping {} of {app}", args.dyno);
    Ok(())
}

#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    #[command(flatten)]
    pub app: AppArg,
    /// Lines of history to show
    #[arg(short = 'n', long = "num", default_value_t = 100)]
    pub lines: usize,
    /// Keep streaming new lines
    #[arg(short, long)]
    pub tail: bool,
    /// Only this dyno (web.1), or every dyno of a process type (web)
    #[arg(short, long)]
    pub dyno: Option<String>,
    /// Only this source: app, router or wdeploy
    #[arg(short, long)]
    pub source: Option<LogSource>,
}

pub fn logs(args: LogsArgs) -> anyhow::Result<()> {
    let app = args.app.resolve()?;
    let client = session::client()?;
    let heartbeat = Some(HEARTBEAT);
    let open = |lines| {
        let (dyno, source) = (args.dyno.as_deref(), args.source);
        client.logs(&app, lines, args.tail, dyno, source, heartbeat)
    };
    let mut out = std::io::stdout();
    if args.tail {
        return crate::tail::follow(args.lines, open, &mut out);
    }
    let colours = crate::printer::colours_on_stdout();
    for line in BufReader::new(open(args.lines)?.reader).lines() {
        let line = line.context("the log stream broke")?;
        let line = if colours {
            crate::printer::paint(&line)
        } else {
            line.as_str().into()
        };
        writeln!(out, "{line}")?;
    }
    Ok(())
}

#[derive(Debug, clap::Args)]
pub struct WaitArgs {
    #[command(flatten)]
    pub app: AppArg,
    /// Only dynos of this process type
    #[arg(short = 't', long = "type", value_name = "TYPE")]
    pub process_type: Option<ProcessType>,
    /// One-off dynos too (`run.NNNN`), which must then run the current release as well
    #[arg(short = 'R', long)]
    pub with_run: bool,
    /// Give up after this many seconds, exiting 1 with what is not there yet
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<u64>,
}

/// `ps:wait`: waits until every dyno runs the current release and is up (or idle, asleep
/// by `idle_after`), with as many of each process type as the formation asks (no fewer,
/// and no more: a handover between nodes or a scale down has ended); on every
/// node of a cluster, where a release reaches the other nodes a moment after the one
/// that made it. For scripts: `wdeploy config:set X=1 && wdeploy ps:wait && smoke-test`.
pub fn wait(args: WaitArgs) -> anyhow::Result<()> {
    let app = args.app.resolve()?;
    let client = session::client()?;
    let deadline = args
        .timeout
        .map(|s| std::time::Instant::now() + std::time::Duration::from_secs(s));
    // The formation of the current release: its Procfile's types only, read once a version.
    let mut formation: Option<(u64, Formation)> = None;
    let mut said = None;
    loop {
        let info = client.app(&app)?;
        let Some(version) = info.release else {
            bail!("{app} has no release yet: `wdeploy push` deploys one");
        };
        if formation.as_ref().is_none_or(|(v, _)| *v != version) {
            let detail = client.release(&app, &format!("v{version}"))?;
            let procfile = wdeploy_core::Procfile::parse(&detail.procfile)
                .with_context(|| format!("reading v{version}'s Procfile"))?;
            formation = Some((version, info.formation.runnable_in(&procfile)));
        }
        let wanted = formation
            .as_ref()
            .map(|(_, f)| f)
            .cloned()
            .unwrap_or_default();
        let dynos = client.dynos(&app)?;
        let waiting = not_there_yet(&wanted, &dynos, version, &args);
        if waiting.is_empty() {
            println!("Every dyno of {app} runs v{version}");
            return Ok(());
        }
        let now = format!(
            "Waiting for every dyno of {app} to run v{version}: {}",
            waiting.join(", ")
        );
        if said.as_ref() != Some(&now) {
            eprintln!("{now}");
            said = Some(now);
        }
        if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
            bail!(
                "gave up after {}s: {}",
                args.timeout.unwrap_or_default(),
                waiting.join(", ")
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}

/// What keeps the dynos in scope from all running `version`: each such dyno on
/// another release or not up, and each process type with fewer dynos than `wanted`.
fn not_there_yet(
    wanted: &Formation,
    dynos: &[DynoInfo],
    version: u64,
    args: &WaitArgs,
) -> Vec<String> {
    let in_scope = |t: &ProcessType| args.process_type.as_ref().is_none_or(|only| only == t);
    let mut waiting = Vec::new();
    for d in dynos.iter().filter(|d| in_scope(&d.process_type)) {
        if dyno::is_one_off(&d.name, &d.process_type) && !args.with_run {
            continue;
        }
        if d.release != version {
            waiting.push(format!("{} runs v{}", d.name, d.release));
        } else if !d.state.serves() {
            waiting.push(format!("{} is {}", d.name, d.state));
        }
    }
    // Each process type asked for or running: fewer ready than asked, or more running
    // (a handover between nodes, the new dyno up and the old one yet to stop, or a scale
    // down under way). Settled means as many as asked.
    let mut types: Vec<&ProcessType> = wanted.iter().map(|(t, _)| t).collect();
    types.extend(dynos.iter().map(|d| &d.process_type));
    types.sort();
    types.dedup();
    for process_type in types.into_iter().filter(|t| in_scope(t)) {
        let asked = wanted.quantity(process_type) as usize;
        let (mut running, mut ready) = (0, 0);
        for d in formation_dynos(dynos, process_type) {
            running += 1;
            if d.release == version && d.state.serves() {
                ready += 1;
            }
        }
        if ready < asked {
            waiting.push(format!("{process_type} {ready}/{asked} ready"));
        } else if running > asked {
            waiting.push(format!("{process_type}: {running} running, {asked} asked"));
        }
    }
    waiting
}

/// The dynos of `process_type` the formation runs (its one-offs are not).
fn formation_dynos<'a>(
    dynos: &'a [DynoInfo],
    process_type: &'a ProcessType,
) -> impl Iterator<Item = &'a DynoInfo> {
    dynos.iter().filter(move |d| {
        d.process_type == *process_type && !dyno::is_one_off(&d.name, process_type)
    })
}

#[cfg(test)]
mod tests {
    use super::{Change, Step};

    #[test]
    fn scale_steps_set_or_change_a_count() {
        let step = |pair: &str| Step::parse(pair).map(|s| (s.process_type.to_string(), s.change));
        assert_eq!(step("web=3"), Some(("web".into(), Change::To(3))));
        assert_eq!(step("worker+1"), Some(("worker".into(), Change::Up(1))));
        assert_eq!(
            step("my-worker-2"),
            Some(("my-worker".into(), Change::Down(2)))
        );
        assert_eq!(
            step("my-worker=0"),
            Some(("my-worker".into(), Change::To(0)))
        );
        for wrong in [
            "web",
            "web=",
            "web+x",
            "=2",
            "my-worker",
            "web=-1",
            "web+-1",
        ] {
            assert_eq!(step(wrong), None, "{wrong}");
        }
        let down = Step::parse("web-2").unwrap();
        assert_eq!(down.quantity(3).unwrap(), 1);
        let err = down.quantity(1).unwrap_err().to_string();
        assert_eq!(err, "web-2: the formation has 1 web dynos");
        assert_eq!(Step::parse("web+2").unwrap().quantity(1).unwrap(), 3);
    }

    #[test]
    fn ps_wait_waits_for_as_many_dynos_as_asked_no_fewer_and_no_more() {
        use wdeploy_api::wire::DynoInfo;
        use wdeploy_core::DynoState;
        let dyno = |name: &str, release: u64, state: DynoState| DynoInfo {
            name: name.into(),
            process_type: name.split('.').next().unwrap().parse().unwrap(),
            state,
            since: chrono::Utc::now(),
            next_start: None,
            release,
            command: String::new(),
            node: None,
        };
        let args = super::WaitArgs {
            app: crate::session::AppArg { app: None },
            process_type: None,
            with_run: false,
            timeout: None,
        };
        let web2: wdeploy_core::Formation = [("web".parse().unwrap(), 2)].into_iter().collect();
        let up = DynoState::Up;
        let waiting = |dynos: &[DynoInfo]| super::not_there_yet(&web2, dynos, 2, &args);
        let settled = [dyno("web.1", 2, up), dyno("web.2", 2, up)];
        assert!(waiting(&settled).is_empty());
        // A one-off (of `web`'s command, on the old release) is not the formation's.
        let one_off = DynoInfo {
            name: "run.1".into(),
            ..dyno("web.3", 1, up)
        };
        assert!(waiting(&[settled[0].clone(), settled[1].clone(), one_off]).is_empty());
        assert_eq!(waiting(&settled[..1]), ["web 1/2 ready"]);
        // A handover between nodes: web.1 up on both.
        let handover = [
            dyno("web.1", 2, up),
            dyno("web.1", 2, up),
            dyno("web.2", 2, up),
        ];
        assert_eq!(waiting(&handover), ["web: 3 running, 2 asked"]);
        // A worker scaled to none, still stopping.
        let worker = [
            settled[0].clone(),
            settled[1].clone(),
            dyno("worker.1", 2, up),
        ];
        assert_eq!(waiting(&worker), ["worker: 1 running, 0 asked"]);
    }
}
