//! The simulated runner (`rarc-sim runner`). Being written.
