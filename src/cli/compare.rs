use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;
use synthscan::Result;

#[derive(Args, Debug)]
pub struct CompareArgs {
    /// Run folders (with run.json) or folders holding run folders.
    #[arg(required = true, value_name = "RUN_DIR")]
    runs: Vec<PathBuf>,
    /// CSV instead of a Markdown table.
    #[arg(long, conflicts_with = "json")]
    csv: bool,
    /// JSON: the table rows (mean, std, n per column) and every run's summary.
    #[arg(long)]
    json: bool,
    /// Folder for compare.png and curves.png.
    #[arg(long, value_name = "DIR", default_value = ".")]
    out: PathBuf,
}

pub fn run(a: CompareArgs) -> Result<ExitCode> {
    let cmp = synthscan::report::compare(&a.runs)?;
    let table = if a.json {
        cmp.to_json()
    } else if a.csv {
        cmp.to_csv()
    } else {
        cmp.to_markdown()
    };
    print!("{}", table.trim_end());
    println!();
    cmp.write_plots(&a.out)?;
    eprintln!(
        "wrote {} and {}",
        a.out.join("compare.png").display(),
        a.out.join("curves.png").display()
    );
    Ok(ExitCode::SUCCESS)
}
