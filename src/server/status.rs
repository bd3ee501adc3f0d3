//! The status page (`GET /` on the operations endpoint): one look at what is
//! healthy, in the manner of HAProxy's stats page — each voter (state,
//! quarantine and why, clock offset, round trips, owed releases), the
//! backend, clients, lock operations per second by outcome, and the last
//! warnings logged. Plain HTML, no script, nothing fetched from elsewhere; it
//! reloads itself every few seconds.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::Shared;
use crate::metrics::{LockKind, LockOutcome};
use crate::redlock::master::{Master, MasterState};
use crate::redlock::voter::Voter;

/// Seconds between reloads of the page.
const REFRESH_SECS: u32 = 3;

/// How far back operation rates reach.
const RATE_WINDOW: Duration = Duration::from_secs(30);

/// Lock operations counted so far, by outcome (ok, refused, error), at the
/// times the page was drawn: what its rates are computed from.
#[derive(Debug, Default)]
pub(crate) struct Rates {
    samples: Mutex<VecDeque<(Instant, [u64; 3])>>,
}

impl Rates {
    /// Records `now`'s totals; the rates per second since the oldest sample
    /// of the window (`None` until one is at least a second old).
    fn sample(&self, now: Instant, totals: [u64; 3]) -> Option<[f64; 3]> {
        let mut samples = self.samples.lock().ok()?;
        while samples
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > RATE_WINDOW)
        {
            samples.pop_front();
        }
        let rates = samples.front().and_then(|(t, then)| {
            let secs = now.duration_since(*t).as_secs_f64();
            (secs >= 1.0)
                .then(|| std::array::from_fn(|i| totals[i].saturating_sub(then[i]) as f64 / secs))
        });
        if samples.len() < 64 {
            samples.push_back((now, totals));
        }
        rates
    }
}

/// Text for HTML.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 10.0 {
        format!("{ms:.2} ms")
    } else if ms < 10_000.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{:.0} s", d.as_secs_f64())
    }
}

const STYLE: &str = "body{font:15px/1.4 system-ui,sans-serif;margin:1rem;color:#222}\
h1{font-size:1.3rem}h2{font-size:1.1rem;margin-top:1.5rem}\
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.3rem .5rem;border-bottom:1px solid #ddd;vertical-align:top}\
th{background:#f4f4f4}.wrap{overflow-x:auto}\
.up{background:#e3f6e3}.down{background:#fbe0e0}.quarantined{background:#fdf1d6}.connecting{background:#eef}\
.badge{padding:.1rem .5rem;border-radius:.3rem;font-weight:600}.ok{background:#cdeccd}.bad{background:#f6c9c9}\
ol{padding-left:1.2rem}li{margin:.2rem 0}.muted{color:#777}";

/// One master's row: `name` is its address, or a shard's under its voter.
fn master_row(out: &mut String, name: &str, m: &Master) {
    let state = m.state();
    let (class, label) = if m.quarantined() {
        ("quarantined", "quarantined")
    } else {
        match state {
            MasterState::Up => ("up", "up"),
            MasterState::Down => ("down", "down"),
            MasterState::Connecting => ("connecting", "connecting"),
        }
    };
    let why = if m.quarantined() {
        let why = m
            .stats
            .quarantine_why
            .lock()
            .map(|w| w.clone())
            .unwrap_or_default();
        format!("{} left: {}", ms(m.quarantine_left()), esc(&why))
    } else {
        "—".into()
    };
    let clock = if m.stats.clock_jumps.load(Ordering::Relaxed)
        + m.stats.clock_steps_back.load(Ordering::Relaxed)
        > 0
        || m.stats.clock_offset_us.load(Ordering::Relaxed) != 0
    {
        format!(
            "{:+} ms (jumps {}, steps back {})",
            m.stats.clock_offset_us.load(Ordering::Relaxed) / 1000,
            m.stats.clock_jumps.load(Ordering::Relaxed),
            m.stats.clock_steps_back.load(Ordering::Relaxed)
        )
    } else {
        "not measured yet".into()
    };
    let rtt = match (m.stats.rtt_quantile(0.5), m.stats.rtt_quantile(0.99)) {
        (Some(p50), Some(p99)) => format!("≤ {} / ≤ {}", ms(p50), ms(p99)),
        _ => "—".into(),
    };
    let _ = write!(
        out,
        "<tr class=\"{class}\" data-state=\"{label}\"><td>{}</td><td><span class=badge>{label}</span></td><td>{why}</td><td>{clock}</td><td>{rtt}</td><td>{}</td></tr>",
        esc(name),
        m.stats.owed.load(Ordering::Relaxed),
    );
}

/// The page.
pub(crate) fn render(shared: &Shared) -> String {
    let engine = shared.engine();
    let voters = engine.voters();
    let mut out = String::with_capacity(8 * 1024);
    let _ = write!(
        out,
        "<!doctype html><html lang=en><head><meta charset=utf-8>\
         <meta name=viewport content=\"width=device-width,initial-scale=1\">\
         <meta http-equiv=refresh content={REFRESH_SECS}><title>redlock-proxy status</title>\
         <style>{STYLE}</style></head><body>"
    );
    let ready = super::health::ready(shared);
    let _ = write!(
        out,
        "<h1>redlock-proxy {} <span id=ready class=\"badge {}\">{}</span></h1>",
        env!("CARGO_PKG_VERSION"),
        if ready.is_ok() { "ok" } else { "bad" },
        match &ready {
            Ok(()) => "ready".to_string(),
            Err(why) => format!("not ready: {}", esc(why)),
        }
    );
    let _ = write!(
        out,
        "<p>Up {} s · clients connected: <span id=clients>{}</span> · quorum {} of {} voters, {} up · reloads every {REFRESH_SECS} s</p>",
        shared.started.elapsed().as_secs(),
        shared.clients(),
        engine.quorum_size(),
        voters.len(),
        engine.masters_up(),
    );

    out.push_str("<h2>Voters</h2><div class=wrap><table id=voters><tr><th>voter</th><th>state</th><th>quarantine</th><th>clock offset</th><th>round trip p50 / p99</th><th>owed releases</th></tr>");
    for v in voters.iter() {
        match v {
            Voter::Master(m) => master_row(&mut out, m.addr(), m),
            Voter::Cluster(c) => {
                let _ = write!(
                    out,
                    "<tr><th colspan=6>cluster voter {} · {} slots unserved</th></tr>",
                    esc(&v.addr()),
                    c.unserved_slots()
                );
                for m in c.shards() {
                    master_row(&mut out, &format!("  shard {}", m.addr()), &m);
                }
            }
        }
    }
    out.push_str("</table></div>");

    out.push_str("<h2>Backend</h2><div class=wrap><table id=backend>");
    let up = shared.health.backend_up();
    let _ = write!(
        out,
        "<tr class=\"{}\"><td>{}</td><td><span class=badge>{}</span></td></tr>",
        if up { "up" } else { "down" },
        esc(&shared.backend.url().to_string()),
        if up { "up" } else { "down" },
    );
    if let Some(cluster) = &shared.cluster {
        let _ = write!(
            out,
            "<tr><td>Redis Cluster: {} masters</td><td>{} slots unserved</td></tr>",
            cluster.masters(),
            cluster.unserved_slots()
        );
    }
    out.push_str("</table></div>");

    let ops = &engine.stats.ops;
    let totals: [u64; 3] = std::array::from_fn(|i| {
        LockKind::ALL
            .iter()
            .map(|k| ops.count(*k, LockOutcome::ALL[i]))
            .sum()
    });
    let rates = shared.status.sample(Instant::now(), totals);
    out.push_str("<h2>Lock operations</h2><div class=wrap><table id=ops><tr><th></th><th>granted, released, answered</th><th>refused</th><th>errors (NOQUORUM, invalid)</th></tr>");
    let _ = write!(out, "<tr><td>per second</td>");
    for i in 0..3 {
        match rates {
            Some(r) => {
                let _ = write!(out, "<td>{:.1}</td>", r[i]);
            }
            None => out.push_str("<td class=muted>— (at the next reload)</td>"),
        }
    }
    let _ = write!(
        out,
        "</tr><tr><td>since start</td><td>{}</td><td>{}</td><td>{}</td></tr></table></div>",
        totals[0], totals[1], totals[2]
    );

    out.push_str("<h2>Recent warnings</h2>");
    let warnings = crate::warnings::recent();
    if warnings.is_empty() {
        out.push_str("<p id=warnings class=muted>None logged.</p>");
    } else {
        out.push_str("<ol id=warnings reversed>");
        for w in warnings.iter().rev() {
            let secs =
                w.at.duration_since(UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
            let ago = SystemTime::now()
                .duration_since(w.at)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            let _ = write!(
                out,
                "<li><span class=muted title=\"unix {secs}\">{ago} s ago · {}</span> {}</li>",
                w.level,
                esc(&w.text)
            );
        }
        out.push_str("</ol>");
    }
    out.push_str("<p class=muted>Also: <a href=/metrics>/metrics</a> · <a href=/healthz>/healthz</a> · <a href=/readyz>/readyz</a></p></body></html>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_need_a_second_of_history() {
        let r = Rates::default();
        let t = Instant::now();
        assert_eq!(r.sample(t, [0, 0, 0]), None);
        assert_eq!(r.sample(t + Duration::from_millis(500), [5, 0, 0]), None);
        assert_eq!(
            r.sample(t + Duration::from_secs(2), [20, 4, 2]),
            Some([10.0, 2.0, 1.0])
        );
        // Samples older than the window no longer count.
        let later = t + RATE_WINDOW + Duration::from_secs(5);
        assert_eq!(r.sample(later, [30, 4, 2]), None);
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            esc("<a href='x'>&\"</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;"
        );
    }
}
