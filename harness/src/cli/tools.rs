//! `meshmig tools install`: builds the real components, with a spinner per component.

use std::time::Duration;

use meshmig::exit;

/// Builds the real components, with a spinner per component and a summary of what was built.
pub fn tools_install(
    tools: &meshmig::tools::Tools,
    only: &[meshmig::tools::Component],
    force: bool,
) -> i32 {
    use meshmig::tools::{build, human_duration, Component};
    match meshmig::tools::go_version() {
        Ok(v) if !v.is_empty() => println!("using {v}; tools folder {}", tools.dir.display()),
        _ => {
            eprintln!("meshmig: {}", meshmig::tools::ToolsError::NoGo);
            return exit::INFRASTRUCTURE;
        }
    }
    let mut failed = 0;
    for c in Component::ALL {
        if !only.is_empty() && !only.contains(&c) {
            continue;
        }
        let version = c.version(&tools.versions).to_string();
        if let (false, Some(b)) = (force, tools.built(c)) {
            println!(
                "cached  {} {version} ({}, built in {})",
                c.name(),
                b.module,
                human_duration(Duration::from_secs_f64(b.build_seconds))
            );
            continue;
        }
        let bar = indicatif::ProgressBar::new_spinner();
        bar.enable_steady_tick(Duration::from_millis(200));
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} [{elapsed}] {msg}")
                .expect("a valid template"),
        );
        let name = c.name();
        let mut on_step = |s: &str| {
            let short: String = s.chars().take(120).collect();
            bar.set_message(format!("{name} {version}: {short}"));
        };
        match build(tools, c, &mut on_step) {
            Ok(b) => {
                bar.finish_and_clear();
                println!(
                    "built   {} {version} from {} in {}: {}",
                    c.name(),
                    b.module,
                    human_duration(Duration::from_secs_f64(b.build_seconds)),
                    b.sizes()
                );
            }
            Err(e) => {
                bar.finish_and_clear();
                failed += 1;
                println!(
                    "FAILED  {} {version}: {}",
                    c.name(),
                    meshmig::error_chain(&e)
                );
            }
        }
    }
    if failed == 0 {
        exit::PASS
    } else {
        exit::INFRASTRUCTURE
    }
}
