use std::process::ExitCode;

use budpipeline::cli::{self, Command};
use budpipeline::config::Settings;
use budpipeline::startup::{Application, shutdown_signal};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = match cli::parse(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("budpipeline: {e}\n(`budpipeline --help` lists the commands and options)");
            return ExitCode::from(2);
        }
    };
    // Everything but the service itself (help, validate, docs, the client).
    if !matches!(command, Command::Serve | Command::Migrate) {
        return cli::execute(command);
    }
    match command {
        Command::Serve | Command::Migrate => {
            let settings = match Settings::from_env() {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("configuration error: {e}");
                    return ExitCode::from(2);
                }
            };
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build();
            let runtime = match runtime {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            // Inside the runtime: trace export runs on a task of it.
            let telemetry = {
                let _entered = runtime.enter();
                budpipeline::telemetry::init(settings.log_format)
            };
            let result = runtime.block_on(async move {
                if matches!(command, Command::Migrate) {
                    let pool = budpipeline::db::pool(&settings, None)?;
                    budpipeline::db::migrate(&pool).await?;
                    tracing::info!("migrations applied");
                    return Ok(());
                }
                let app = Application::build(settings).await?;
                tracing::info!(port = app.port(), "listening");
                app.run(shutdown_signal()).await?;
                Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
            });
            let code = match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = %e, "stopped with an error");
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            };
            // The last spans (the drain's) leave before the runtime stops.
            telemetry.shutdown(std::time::Duration::from_secs(5));
            code
        }
        _ => unreachable!("cli::execute runs every other command"),
    }
}
