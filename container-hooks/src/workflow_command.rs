//! Workflow commands (`::error::…`, `::warning::…`, `::debug::…`) written to stdout, which the
//! runner turns into annotations and debug lines. Data is escaped the way the runner unescapes it:
//! `%` → `%25`, CR → `%0D`, LF → `%0A`, so a message is always exactly one line.

use std::io::Write;

/// Escapes the data part of a workflow command.
pub fn escape_data(message: &str) -> String {
    message.replace('%', "%25").replace('\r', "%0D").replace('\n', "%0A")
}

/// `::error::<message>` (without the newline).
pub fn error_line(message: &str) -> String {
    format!("::error::{}", escape_data(message))
}

/// `::warning::<message>` (without the newline).
pub fn warning_line(message: &str) -> String {
    format!("::warning::{}", escape_data(message))
}

/// `::debug::<message>` (without the newline); shown only with step debug logging.
pub fn debug_line(message: &str) -> String {
    format!("::debug::{}", escape_data(message))
}

/// Writes one line to stdout and flushes it. Only call it while no step output is being pumped.
pub fn emit(line: &str) {
    let mut out = std::io::stdout().lock();
    // The runner is gone if stdout is: nothing left to tell.
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

/// Reports an error the runner shows as an annotation.
pub fn error(message: &str) {
    emit(&error_line(message));
}

/// Reports a warning the runner shows as an annotation.
pub fn warning(message: &str) {
    emit(&warning_line(message));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_whatever_the_message() {
        assert_eq!(error_line("plain"), "::error::plain");
        assert_eq!(
            error_line("100% sure\r\nsecond line\nthird"),
            "::error::100%25 sure%0D%0Asecond line%0Athird"
        );
        assert_eq!(warning_line("a\nb"), "::warning::a%0Ab");
        assert_eq!(debug_line("%0A"), "::debug::%250A");
    }
}
