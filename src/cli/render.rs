//! The text aliasctl prints for people: pure functions from the API's DTOs to tables and lines.
//!
//! Nothing here does IO or reads the clock, so every rendering can be tested from hand-built
//! DTOs (see `tests.rs`); printing is the caller's business.

use crate::api::dto::rfc3339_ms;
use crate::api::dto::{
    AliasDto, EventDto, Health, HistoryDto, MemberDto, OpKind, OperationDto, OperationReply, Phase,
    PlanDto, ReloadDto, RetiredDto, ServiceDto, ServicesDto,
};
use crate::cluster::{ClusterMode, ClusterStatus};
use crate::text::{counted, plural};

pub(super) fn op_word(kind: OpKind) -> &'static str {
    match kind {
        OpKind::Promote => "promotion",
        OpKind::Rollback => "rollback",
    }
}

/// `promotion 4`: a running operation by its kind and id.
pub(super) fn op_name(op: &OperationDto) -> String {
    format!("{} {}", op_word(op.kind), op.id)
}

/// `web-v1 → web-v2`: what a running operation moves from and to.
pub(super) fn op_move(op: &OperationDto) -> String {
    format!("{} → {}", plus(&op.from), plus(&op.to))
}

/// `promotion 4`, `rollback 9`: the operation a history entry belongs to, if any (`operation 4`
/// for entries recorded before aliasd noted the kind).
pub(super) fn op_label(e: &HistoryDto) -> Option<String> {
    e.op.map(|id| {
        let word = e.op_kind.map_or("operation", op_word);
        format!("{word} {id}")
    })
}

pub(super) fn plus(services: &[String]) -> String {
    if services.is_empty() {
        "(nothing)".into()
    } else {
        services.join("+")
    }
}

/// The one-line summary of what a promote or rollback did.
pub(super) fn started_text(reply: &OperationReply) -> String {
    let a = &reply.alias;
    if !reply.started {
        return format!(
            "{}: already answers with {}: nothing had to change",
            a.name,
            plus(&a.answering)
        );
    }
    match &a.operation {
        Some(op) => format!(
            "{}: {} started: {} (phase {}{})",
            a.name,
            op_name(op),
            op_move(op),
            a.phase,
            op.phase_deadline
                .as_ref()
                .map(|d| format!(", until {d}"))
                .unwrap_or_default()
        ),
        None => format!("{}: started and already ended; {}", a.name, where_is(a)),
    }
}

/// Where an alias is, in a few words: its phase, its answers, what ends the phase.
pub(super) fn where_is(a: &AliasDto) -> String {
    let mut s = format!("phase {}, answering {}", a.phase, plus(&a.answering));
    if let Some(op) = &a.operation {
        s.push_str(&format!(" ({} {})", op_name(op), op_move(op)));
        if let Some(weight) = weight_text(a) {
            s.push_str(&format!(", {weight}"));
        }
        if let Some(until) = &op.drain_until {
            s.push_str(&format!(", draining until {until}"));
        } else if a.phase == Phase::Mixed && op.confirm && !op.confirmed {
            s.push_str(&format!(
                ", observing until {} then waiting for a confirm",
                op.phase_deadline.as_deref().unwrap_or("?")
            ));
        } else if let Some(deadline) = &op.phase_deadline {
            s.push_str(&format!(", until {deadline}"));
        }
    }
    s
}

pub(super) fn retired_text(r: &RetiredDto) -> String {
    if r.safe_to_stop {
        format!(
            "{} safe to stop since {}",
            plus(&r.services),
            r.safe_to_stop_at
        )
    } else {
        format!(
            "{} not safe to stop before {}",
            plus(&r.services),
            r.safe_to_stop_at
        )
    }
}

/// The answer to `link`: the alias and what it now points at.
pub(super) fn link_text(alias: &AliasDto) -> String {
    format!(
        "{} -> {} (revision {}, serial {})\n",
        alias.name,
        alias.targets.join(", "),
        alias.revision,
        alias.serial
    )
}

/// The answer to `confirm`.
pub(super) fn confirmed_text(reply: &OperationReply) -> String {
    let a = &reply.alias;
    format!("{}: confirmed; {}\n", a.name, where_is(a))
}

/// The answer to `abort`, with what the aborted operation retired, if anything.
pub(super) fn aborted_text(reply: &OperationReply) -> String {
    let a = &reply.alias;
    let mut line = format!("{}: aborted; {}", a.name, where_is(a));
    if let Some(r) = &a.retired {
        line.push_str(&format!("; {}", retired_text(r)));
    }
    line + "\n"
}

pub(super) fn plan_text(plan: &PlanDto) -> String {
    if plan.noop {
        return format!(
            "{}: already answers with {}: a promote would change nothing (dry run)\n",
            plan.alias,
            plus(&plan.to)
        );
    }
    let mut s = format!(
        "plan for {}: {} → {} (dry run: nothing was changed)\n",
        plan.alias,
        plus(&plan.from),
        plus(&plan.to)
    );
    let rows: Vec<Vec<String>> = plan
        .steps
        .iter()
        .enumerate()
        .map(|(i, step)| {
            vec![
                (i + 1).to_string(),
                step.phase.to_string(),
                step.services.join(","),
                step.endpoints.join(","),
                step.until.clone(),
            ]
        })
        .collect();
    s.push_str(&table(
        &["STEP", "PHASE", "ANSWERING", "ENDPOINTS", "UNTIL"],
        &rows,
    ));
    s.push_str(&format!(
        "{}: {} of {} healthy now, {} needed; warm timeout {}, observe {}{}; ttl {}s, negative ttl {}s, drain window {}\n",
        plus(&plan.to),
        plan.healthy_now,
        plural(plan.total, "endpoint"),
        plan.min_healthy,
        plan.warm_timeout,
        plan.observe,
        if plan.confirm { ", then a confirm" } else { "" },
        plan.ttl,
        plan.negative_ttl,
        plan.drain_window
    ));
    s
}

pub(super) fn event_text(event: &EventDto) -> String {
    match event {
        EventDto::Rollout { rollout, .. } => super::rollout::rollout_line(rollout),
        EventDto::Change { entry, .. } => format!(
            "{}: {} ({}revision {} by {}){}",
            entry.alias,
            entry.change,
            op_label(entry)
                .map(|op| format!("{op}, "))
                .unwrap_or_default(),
            entry.revision,
            entry.actor,
            entry
                .reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default()
        ),
        EventDto::Health {
            service,
            endpoint,
            health,
            error,
            ..
        } => format!(
            "{service} {endpoint} {health}{}",
            error
                .as_deref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        ),
        EventDto::Registry { entry } => format!(
            "{}: {} by {}{}",
            entry
                .service
                .as_deref()
                .unwrap_or(if entry.alias.is_empty() {
                    "config"
                } else {
                    &entry.alias
                }),
            entry.change,
            entry.actor,
            entry
                .reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default()
        ),
        EventDto::Endpoints {
            service, endpoints, ..
        } => format!(
            "{service} endpoints: {}",
            if endpoints.is_empty() {
                "(none)".to_owned()
            } else {
                endpoints.join(", ")
            }
        ),
        EventDto::Docker {
            connected, error, ..
        } => {
            if *connected {
                "Docker connected".to_owned()
            } else {
                format!(
                    "Docker unreachable{}: answers keep the containers last seen",
                    error
                        .as_deref()
                        .map(|e| format!(" ({e})"))
                        .unwrap_or_default()
                )
            }
        }
        EventDto::Secondary { secondary: s, .. } => {
            let serves = s
                .serial
                .map_or("nothing yet".to_owned(), |n| format!("serial {n}"));
            let state = if s.caught_up {
                "caught up".to_owned()
            } else {
                format!("behind (the zone is at {})", s.wanted)
            };
            let error = s
                .error
                .as_deref()
                .map(|e| format!("; {e}"))
                .unwrap_or_default();
            format!(
                "secondary {} of {} serves {serves}: {state}{error}",
                s.address, s.zone
            )
        }
        EventDto::Lagged { skipped } => {
            format!("{} skipped; state re-read", plural(*skipped, "event"))
        }
    }
}

/// Where a promotion with steps is: `weight 10% (step 1 of 3, holds 1m until ...)`.
pub(super) fn weight_text(a: &AliasDto) -> Option<String> {
    let weight = a.weight?;
    let Some(step) = &a.step else {
        return Some(format!("weight {weight}%"));
    };
    let state = match (&step.effective_at, &step.hold_until, step.pause) {
        (None, _, _) => "taking effect".to_owned(),
        (Some(_), Some(until), _) => format!("holding until {until}"),
        (Some(_), None, true) if step.confirmed => "confirmed".to_owned(),
        (Some(_), None, true) => "paused: needs a confirm".to_owned(),
        (Some(_), None, false) => "in effect".to_owned(),
    };
    Some(format!(
        "weight {weight}% (step {} of {}, {state})",
        step.number, step.of
    ))
}

/// The measured gates in words: `error rate <= 1%, p99 <= 2x the old version's, judged from
/// 50 requests`.
pub(super) fn measured_gates_text(gates: Option<&crate::api::dto::GatesDto>) -> String {
    let Some(g) = gates else {
        return "no gates on the proxy's figures".to_owned();
    };
    let mut parts = Vec::new();
    if let Some(rate) = g.max_error_rate {
        parts.push(format!("error rate <= {}%", rate * 100.0));
    }
    if let Some(ratio) = g.max_latency_ratio {
        parts.push(format!("p99 <= {ratio}x the old version's"));
    }
    parts.push(format!("judged from {}", plural(g.min_requests, "request")));
    parts.join(", ")
}

/// Both versions' figures through the proxy since the step took effect:
/// `new 812 requests, 0.5% errors, p99 90ms; old 3400 requests, 0.1% errors, p99 81ms`.
pub(super) fn figures_text(f: &crate::api::dto::StepFiguresDto) -> String {
    let side = |s: &crate::api::dto::SideFiguresDto| {
        let p99 = s
            .p99_ms
            .map(|p| format!(", p99 {p:.1}ms"))
            .unwrap_or_default();
        format!(
            "{}, {:.1}% errors{p99}",
            plural(s.requests, "request"),
            s.error_rate * 100.0
        )
    };
    format!("new {}; old {}", side(&f.new), side(&f.old))
}

/// The steps of an operation as a timeline: done, current in brackets, to come.
pub(super) fn steps_timeline(a: &AliasDto) -> Option<String> {
    let op = a.operation.as_ref()?;
    if op.steps.is_empty() {
        return None;
    }
    let current = a.step.as_ref().map(|s| s.number as usize);
    let items: Vec<String> = op
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let mut text = format!("{}%", s.weight);
            if let Some(hold) = &s.hold {
                text.push_str(&format!(":{hold}"));
            }
            if s.pause {
                text.push_str(":pause");
            }
            match current {
                Some(c) if i + 1 == c => format!("[{text}]"),
                Some(c) if i + 1 < c => format!("{text} done"),
                None if a.phase == Phase::Draining => format!("{text} done"),
                _ => text,
            }
        })
        .collect();
    Some(items.join(" -> "))
}

/// One line: phase, operation, answers and each member's health.
pub(super) fn status_line(a: &AliasDto) -> String {
    let mut s = format!("{} {}", a.name, a.phase);
    if let Some(op) = &a.operation {
        s.push_str(&format!(" ({} {}", op_name(op), op_move(op)));
        if let Some(weight) = weight_text(a) {
            s.push_str(&format!(", {weight}"));
        }
        if let Some(until) = &op.drain_until {
            s.push_str(&format!(", drain until {until}"));
        } else if let Some(deadline) = op.phase_deadline.as_ref().filter(|_| a.step.is_none()) {
            s.push_str(&format!(", until {deadline}"));
        }
        if a.phase == Phase::Mixed && op.confirm && !op.confirmed {
            s.push_str(", needs a confirm");
        }
        if let Some(f) = a.step.as_ref().and_then(|s| s.figures.as_ref()) {
            s.push_str(&format!(", {}: {}", f.verdict, f.summary));
        }
        s.push(')');
    }
    s.push_str(&format!(" answering {}", plus(&a.answering)));
    for m in &a.members {
        s.push_str(&format!(" | {}", member_summary(m)));
    }
    if let Some(r) = &a.retired {
        s.push_str(&format!(" | retired {}", retired_text(r)));
    }
    s
}

/// `web-v2 incoming 1/2 healthy (127.0.0.42:80 unhealthy: HTTP 503)`.
pub(super) fn member_summary(m: &MemberDto) -> String {
    let healthy = m
        .endpoints
        .iter()
        .filter(|e| e.health == Health::Healthy)
        .count();
    let mut s = format!(
        "{} {} {healthy}/{} healthy",
        m.service,
        m.role,
        m.endpoints.len()
    );
    let unknown = m
        .endpoints
        .iter()
        .filter(|e| e.health == Health::Unknown)
        .count();
    if unknown > 0 {
        s.push_str(&format!(", {unknown} unknown"));
    }
    if let Some(bad) = m.endpoints.iter().find(|e| e.health == Health::Unhealthy) {
        s.push_str(&format!(
            " ({} unhealthy{})",
            bad.addr,
            bad.last_error
                .as_deref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        ));
    }
    s
}

// ---- tables ----

/// Left-aligned columns, two spaces apart.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  "));
            }
        }
        out.trim_end().to_owned() + "\n"
    };
    let mut out = line(header.iter().map(|h| h.to_string()).collect());
    for row in rows {
        out.push_str(&line(row.clone()));
    }
    out
}

pub(super) fn alias_table(aliases: &[AliasDto]) -> String {
    let rows: Vec<Vec<String>> = aliases
        .iter()
        .map(|a| {
            vec![
                a.name.clone(),
                a.targets.join(","),
                a.phase.to_string(),
                a.endpoints.join(","),
                a.revision.to_string(),
                a.changed_by.clone(),
                a.changed_at.clone(),
            ]
        })
        .collect();
    table(
        &[
            "ALIAS",
            "TARGETS",
            "PHASE",
            "ENDPOINTS",
            "REV",
            "BY",
            "CHANGED",
        ],
        &rows,
    )
}

pub(super) fn alias_detail(a: &AliasDto) -> String {
    let none = |v: &[String]| {
        if v.is_empty() {
            "(none)".to_owned()
        } else {
            v.join(", ")
        }
    };
    let mut s = format!(
        "alias:      {}\nzone:       {}\nphase:      {}\ntargets:    {}\nanswering:  {}\nendpoints:  {}\n",
        a.name,
        a.zone,
        a.phase,
        none(&a.targets),
        none(&a.answering),
        none(&a.endpoints),
    );
    if let Some(f) = &a.fallback {
        s.push_str(&format!(
            "fallback:   {f} (no endpoint is healthy; the if_none_healthy policy chose the answer)\n"
        ));
    }
    if let Some(op) = &a.operation {
        s.push_str(&format!(
            "operation:  {}: {}, by {} at {}{}\n",
            op_name(op),
            op_move(op),
            op.actor,
            op.started_at,
            op.reason
                .as_deref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        ));
        let min_healthy = op.min_healthy.map_or("all".to_owned(), |n| n.to_string());
        if op.steps.is_empty() {
            s.push_str(&format!(
                "  gates:    observe {}, min healthy {min_healthy}, warm timeout {}, confirm {}\n",
                op.observe,
                op.warm_timeout,
                match (op.confirm, op.confirmed) {
                    (false, _) => "not needed",
                    (true, false) => "needed, not given yet",
                    (true, true) => "given",
                }
            ));
        } else {
            s.push_str(&format!(
                "  gates:    min healthy {min_healthy}, warm timeout {}, {}\n",
                op.warm_timeout,
                measured_gates_text(op.gates.as_ref())
            ));
        }
        if let Some(timeline) = steps_timeline(a) {
            s.push_str(&format!("  steps:    {timeline}\n"));
        }
        if let Some(weight) = weight_text(a) {
            s.push_str(&format!("  {weight}\n"));
        }
        if let Some(f) = a.step.as_ref().and_then(|s| s.figures.as_ref()) {
            s.push_str(&format!("  figures:  {} ({})\n", figures_text(f), f.summary));
        }
        if let Some(until) = &op.drain_until {
            s.push_str(&format!("  drain until:    {until}\n"));
        } else if let Some(deadline) = op.phase_deadline.as_ref().filter(|_| a.step.is_none()) {
            let what = match a.phase {
                Phase::Warming => "warm deadline:  ",
                Phase::Mixed => "observe until:  ",
                Phase::Stable | Phase::Draining => "phase deadline: ",
            };
            s.push_str(&format!("  {what}{deadline}\n"));
        }
    }
    for w in &a.warnings {
        s.push_str(&format!("warning:    {w}\n"));
    }
    s.push_str("members:\n");
    if a.members.is_empty() {
        s.push_str("  (none)\n");
    }
    for m in &a.members {
        s.push_str(&format!(
            "  {} ({}{}{})\n",
            m.service,
            m.role,
            if m.answering { ", answering" } else { "" },
            if m.inflight > 0 {
                format!(", {} in flight through the proxy", m.inflight)
            } else {
                String::new()
            }
        ));
        if m.endpoints.is_empty() {
            s.push_str("    (no endpoints)\n");
        }
        for e in &m.endpoints {
            s.push_str(&format!("    {}  {}", e.addr, e.health));
            if let Some(c) = &e.container {
                s.push_str(&format!("  container {} ({})", c.name, c.short_id));
            }
            if let Some(at) = &e.last_check {
                s.push_str(&format!("  checked {at}"));
            }
            if let Some(err) = &e.last_error {
                s.push_str(&format!("  last error: {err}"));
            }
            s.push('\n');
        }
    }
    if let Some(d) = &a.drain {
        s.push_str(&format!(
            "drain:      {}: TTL window {} {}; {} still open through the proxy\n",
            d.services.join(", "),
            if d.ttl_window_over { "ended" } else { "ends" },
            d.ttl_window_until,
            counted(
                d.proxy_inflight,
                "request or connection",
                "requests or connections"
            )
        ));
        for behind in &d.secondaries_behind {
            s.push_str(&format!("            waiting for secondary {behind}\n"));
        }
        for behind in &d.nodes_behind {
            s.push_str(&format!("            waiting for {behind}\n"));
        }
    }
    if let Some(r) = &a.retired {
        s.push_str(&format!(
            "retired:    {} (by operation {})\n",
            retired_text(r),
            r.op
        ));
    }
    s.push_str(&format!(
        "srv:        {}\nttl:        {}s\nrevision:   {}\nchanged:    {} by {}\nserial:     {}\ngeneration: {}\n",
        a.srv, a.ttl, a.revision, a.changed_at, a.changed_by, a.serial, a.generation
    ));
    s
}

/// One row per entry; the OP column (`promotion 4`, `rollback 9`) only when some entry belongs
/// to an operation, so a service's history stays narrow.
pub(super) fn history_table(history: &[HistoryDto]) -> String {
    let ops = history.iter().any(|e| e.op.is_some());
    let rows: Vec<Vec<String>> = history
        .iter()
        .map(|e| {
            let mut row = vec![e.revision.to_string(), e.at.clone(), e.change.to_string()];
            if ops {
                row.push(op_label(e).unwrap_or_else(|| "-".to_owned()));
            }
            row.extend([
                e.phase.map_or_else(String::new, |p| p.to_string()),
                e.answering.join(","),
                e.actor.clone(),
                e.reason.clone().unwrap_or_default(),
            ]);
            row
        })
        .collect();
    let mut header = vec!["REV", "TIME", "CHANGE"];
    if ops {
        header.push("OP");
    }
    header.extend(["PHASE", "ANSWERING", "ACTOR", "REASON"]);
    table(&header, &rows)
}

/// The cluster as one node sees it: one row per live node, then the mode, etcd's health, the
/// leader when none is known, and the problems.
pub(super) fn cluster_text(c: &ClusterStatus) -> String {
    let rows: Vec<Vec<String>> = c
        .nodes
        .iter()
        .map(|n| {
            vec![
                n.name.clone(),
                n.api.to_string(),
                if n.leader { "leader" } else { "follower" }.to_owned(),
                n.applied_revision.to_string(),
                n.behind.to_string(),
                if n.config_matches { "same" } else { "differs" }.to_owned(),
                rfc3339_ms(n.started_ms),
            ]
        })
        .collect();
    let mut s = table(
        &[
            "NODE", "API", "ROLE", "APPLIED", "BEHIND", "CONFIG", "STARTED",
        ],
        &rows,
    );
    match c.mode {
        ClusterMode::Single => s.push_str(&format!(
            "mode: single (no [cluster]: the local journal, no etcd); this node: {}\n",
            c.node
        )),
        ClusterMode::Etcd => s.push_str(&format!(
            "mode: etcd; this node: {}; latest revision seen: {}\n",
            c.node, c.revision
        )),
    }
    if let Some(etcd) = &c.etcd {
        let endpoints = etcd.endpoints.join(", ");
        let since = rfc3339_ms(etcd.since_ms);
        if etcd.connected {
            s.push_str(&format!("etcd: connected to {endpoints} since {since}\n"));
        } else {
            s.push_str(&format!(
                "etcd: UNREACHABLE at {endpoints} since {since}{}; this node serves its last state and takes no changes\n",
                etcd.error
                    .as_deref()
                    .map(|e| format!(" ({e})"))
                    .unwrap_or_default()
            ));
        }
    }
    if c.leader.is_none() {
        s.push_str("leader: none known; changes wait for one, then are refused (HTTP 503)\n");
    }
    if !c.problems.is_empty() {
        s.push_str("problems:\n");
        for p in &c.problems {
            s.push_str(&format!("  {p}\n"));
        }
    }
    s
}

/// Every service with one row per endpoint (its source, container and health), then how
/// Docker discovery stands and the containers it skipped.
pub(super) fn service_table(services: &ServicesDto) -> String {
    let mut rows: Vec<Vec<String>> = Vec::new();
    for svc in &services.services {
        let linked = if svc.linked_by.is_empty() {
            "-".to_owned()
        } else {
            svc.linked_by.join(",")
        };
        if svc.endpoints.is_empty() {
            rows.push(vec![
                svc.name.clone(),
                svc.source.clone(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                linked.clone(),
            ]);
        }
        for e in &svc.endpoints {
            rows.push(vec![
                svc.name.clone(),
                svc.source.clone(),
                e.addr.clone(),
                e.source.clone(),
                e.container
                    .as_ref()
                    .map_or("-".to_owned(), |c| format!("{} ({})", c.name, c.short_id)),
                e.health.to_string(),
                linked.clone(),
            ]);
        }
    }
    let mut s = table(
        &[
            "SERVICE",
            "DEFINED",
            "ENDPOINT",
            "FROM",
            "CONTAINER",
            "HEALTH",
            "LINKED BY",
        ],
        &rows,
    );
    for svc in &services.services {
        for w in &svc.warnings {
            s.push_str(&format!("warning: {}: {w}\n", svc.name));
        }
    }
    if let Some(d) = &services.docker {
        if d.connected {
            s.push_str(&format!(
                "docker: connected to {}{} since {}\n",
                d.endpoint,
                d.version
                    .as_deref()
                    .map(|v| format!(" ({v})"))
                    .unwrap_or_default(),
                d.since
            ));
        } else {
            s.push_str(&format!(
                "docker: UNREACHABLE at {} since {}{}; answers keep the containers last seen{}\n",
                d.endpoint,
                d.since,
                d.error
                    .as_deref()
                    .map(|e| format!(" ({e})"))
                    .unwrap_or_default(),
                d.last_sync
                    .as_deref()
                    .map(|t| format!(" (at {t})"))
                    .unwrap_or_default()
            ));
        }
    }
    if !services.problems.is_empty() {
        s.push_str("problems (containers skipped):\n");
        for p in &services.problems {
            s.push_str(&format!(
                "  {} ({}): {}\n",
                p.container.name, p.container.short_id, p.problem
            ));
        }
    }
    s
}

/// What `aliasctl service set` did.
pub(super) fn service_text(s: &ServiceDto) -> String {
    let endpoints: Vec<&str> = s.endpoints.iter().map(|e| e.addr.as_str()).collect();
    format!(
        "service {} ({}): {}; check {}\n",
        s.name,
        s.source,
        if endpoints.is_empty() {
            "no endpoints".to_owned()
        } else {
            endpoints.join(", ")
        },
        s.check
    )
}

/// What `aliasctl reload` did.
pub(super) fn reload_text(r: &ReloadDto) -> String {
    format!("reloaded: {}\n", r.summary)
}
