//! The master's answers (the JSON of [`super::Answer::to_json`]) as a person reads them, for
//! `console` at a terminal. Read from the JSON, not the typed answer: the console may talk to
//! a master of another version, and an answer it does not know is shown as its JSON.

use serde_json::Value;

use crate::status::{StatusReport, render_table};

/// One answer as text, ending with a newline.
pub fn render(answer: &Value) -> String {
    let mut text = describe(answer).unwrap_or_else(|| {
        serde_json::to_string_pretty(answer).unwrap_or_else(|_| answer.to_string())
    });
    if !text.ends_with('\n') {
        text.push('\n');
    }
    text
}

fn describe(answer: &Value) -> Option<String> {
    let via = || {
        answer
            .get("via")
            .and_then(Value::as_u64)
            .map_or(String::new(), |pid| format!(" (via worker pid {pid})"))
    };
    if answer.get("ok")? == false {
        let error = answer.get("error").and_then(Value::as_str)?;
        return Some(format!("refused: {error}{}", via()));
    }
    if let Some(count) = answer.get("restarting").and_then(Value::as_u64) {
        let mode = answer
            .get("mode")
            .and_then(Value::as_str)
            .unwrap_or("graceful");
        let generation = answer
            .get("generation")
            .and_then(Value::as_u64)
            .map_or(String::new(), |g| format!(", generation {g}"));
        return Some(format!(
            "restarting {count} {} ({mode}{generation})",
            plural(count, "worker", "workers")
        ));
    }
    if let Some(mode) = answer.get("stopping").and_then(Value::as_str) {
        return Some(format!("stopping the cluster ({mode})"));
    }
    if let Some(level) = answer.get("loglevel").and_then(Value::as_str) {
        let workers = answer.get("workers").and_then(Value::as_u64).unwrap_or(0);
        return Some(format!(
            "log level {level} (the master and {workers} {})",
            plural(workers, "worker", "workers")
        ));
    }
    if let Some(ms) = answer
        .get("clientMessageResendInterval")
        .and_then(Value::as_u64)
    {
        let workers = answer.get("workers").and_then(Value::as_u64).unwrap_or(0);
        return Some(format!(
            "unacked pushes are re-sent every {ms} ms ({workers} {} told)",
            plural(workers, "worker", "workers")
        ));
    }
    if let Some(status) = answer.get("status") {
        let report: StatusReport = serde_json::from_value(status.clone()).ok()?;
        return Some(render_table(&report));
    }
    if let Some(id) = answer.get("pushed").and_then(Value::as_u64) {
        return Some(format!("push {id} published{}", via()));
    }
    if let Some(total) = answer.get("total").and_then(Value::as_u64) {
        let mut text = format!("{total} {}\n", plural(total, "client", "clients"));
        for worker in answer.get("workers").and_then(Value::as_array)? {
            let slot = worker.get("slot").and_then(Value::as_str).unwrap_or("?");
            let pid = worker.get("pid").and_then(Value::as_u64).unwrap_or(0);
            let clients = worker.get("clients").and_then(Value::as_u64).unwrap_or(0);
            text.push_str(&format!("  worker {slot:>3}  pid {pid:>7}  {clients:>6}\n"));
        }
        return Some(text);
    }
    None
}

fn plural<'a>(n: u64, one: &'a str, many: &'a str) -> &'a str {
    if n == 1 { one } else { many }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::console::{Answer, ClientCount, Mode};
    use crate::status::Pid;

    #[test]
    fn every_answer_reads_as_a_sentence() {
        let cases = [
            (
                Answer::Refused("wrong shutdown code".into()),
                "refused: wrong shutdown code\n",
            ),
            (
                Answer::Restarting {
                    count: 2,
                    mode: Mode::Graceful,
                    generation: Some(3),
                },
                "restarting 2 workers (graceful, generation 3)\n",
            ),
            (
                Answer::Stopping(Mode::Immediate),
                "stopping the cluster (immediate)\n",
            ),
            (
                Answer::LogLevel {
                    level: crate::config::LogLevel::Debug,
                    workers: 1,
                },
                "log level debug (the master and 1 worker)\n",
            ),
            (
                Answer::ResendInterval {
                    ms: 500,
                    workers: 2,
                },
                "unacked pushes are re-sent every 500 ms (2 workers told)\n",
            ),
            (
                Answer::Pushed { id: 4, via: Pid(9) },
                "push 4 published (via worker pid 9)\n",
            ),
            (
                Answer::PushFailed {
                    error: "no worker listens".into(),
                    via: Some(Pid(9)),
                },
                "refused: no worker listens (via worker pid 9)\n",
            ),
            (
                Answer::ClientCount {
                    total: 3,
                    workers: vec![ClientCount {
                        slot: "0".into(),
                        pid: Pid(42),
                        clients: 3,
                    }],
                },
                "3 clients\n  worker   0  pid      42       3\n",
            ),
        ];
        for (answer, text) in cases {
            assert_eq!(render(&answer.to_json()), text, "{answer:?}");
        }
    }

    #[test]
    fn an_answer_it_does_not_know_is_shown_as_json() {
        assert_eq!(
            render(&json!({"ok": true, "new": 1})),
            "{\n  \"ok\": true,\n  \"new\": 1\n}\n"
        );
    }
}
