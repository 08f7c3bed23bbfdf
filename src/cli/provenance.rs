use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;
use synthscan::Result;
use synthscan::decision::describe_signal;
use synthscan::evidence::inspect_files;
use synthscan::provenance::{Evidence, Signal, Verdict};

#[derive(Args, Debug)]
pub struct ProvenanceArgs {
    /// One JSON object per line: the path and its evidence record (verdict, reason, signals,
    /// notes, errors, format), or the error that kept the file from being read.
    #[arg(long)]
    json: bool,
    /// Image files, or folders searched for image files.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
}

pub fn run(a: ProvenanceArgs) -> Result<ExitCode> {
    let mut failed = false;
    for (n, f) in inspect_files(&a.paths).iter().enumerate() {
        failed |= f.error.is_some();
        if a.json {
            println!("{}", super::json_line(f)?);
            continue;
        }
        match (&f.evidence, &f.error) {
            (Some(ev), _) => {
                if n > 0 {
                    println!();
                }
                print_evidence(&f.path.display().to_string(), ev);
            }
            (None, Some(e)) => eprintln!("error: {e}"),
            (None, None) => {}
        }
    }
    Ok(super::status(failed))
}

/// Every signal of one file, in detail.
fn print_evidence(path: &str, ev: &Evidence) {
    println!("{path}");
    println!("  verdict: {} — {}", ev.verdict, ev.reason);
    if let Some(format) = &ev.format {
        println!("  format: {format}");
    }
    for (k, s) in ev.signals.iter().enumerate() {
        print_signal(k + 1, s);
    }
    for note in &ev.notes {
        println!("  note: {note}");
    }
    for e in &ev.errors {
        println!("  problem: {e}");
    }
}

/// The name a value has in JSON (`signed-untrusted`, `c2pa`…).
fn name<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

fn print_signal(k: usize, s: &Signal) {
    let says = match s.says {
        Verdict::None => "nothing decisive".to_string(),
        v => v.to_string(),
    };
    println!(
        "  signal {k}: {} ({}), says {says}",
        name(&s.kind),
        name(&s.strength)
    );
    let line = describe_signal(s);
    println!("    {line}");
    if !line.contains(s.detail.as_str()) {
        println!("    {}", s.detail);
    }
    let fact = |label: &str, value: Option<String>| {
        if let Some(v) = value.filter(|v| !v.is_empty()) {
            println!("    {label}: {v}");
        }
    };
    fact("generator", s.generator.clone());
    fact("field", s.field.clone());
    fact("value", s.value.as_ref().map(|v| v.replace('\n', " ⏎ ")));
    fact("payload", s.payload.clone());
    fact("bit agreement", s.bit_agreement.map(|a| format!("{a:.3}")));
    if let Some(c) = &s.c2pa {
        fact("validation", Some(name(&c.validation)));
        fact("SDK validation state", c.validation_state.clone());
        fact("failure codes", Some(c.failure_codes.join(", ")));
        fact("manifests", Some(c.manifests.to_string()));
        fact("active manifest", c.active_manifest.clone());
        fact("claim generator", c.claim_generator.clone());
        fact("title", c.title.clone());
        fact(
            "digital source types",
            Some(c.digital_source_types.join(", ")),
        );
        let actions: Vec<String> = c
            .actions
            .iter()
            .map(|a| {
                let mut t = a.action.clone();
                let extra: Vec<&str> = [
                    a.software_agent.as_deref(),
                    a.digital_source_type.as_deref(),
                ]
                .into_iter()
                .flatten()
                .collect();
                if !extra.is_empty() {
                    t += &format!(" ({})", extra.join(", "));
                }
                if !a.active {
                    t += " [ingredient]";
                }
                t
            })
            .collect();
        fact("actions", Some(actions.join("; ")));
        fact("signer", c.signer.clone());
        fact("signer common name", c.signer_common_name.clone());
        fact("signed at", c.signed_at.clone());
        fact("trust list", Some(c.trust_list.clone()));
        fact("SDK error", c.error.clone());
    }
}
