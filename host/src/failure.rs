//! Why an input record fails: one home for every reason a record is dead-lettered with.
//!
//! The sandbox's and the router's reasons are listed once, below, and [`Reason::ALL`] is made
//! from that list. A sink defines the reasons of the records it refuses itself
//! ([`SinkReason`], listed with the sink), so adding a sink adds no arm here.

/// Defines [`Reason`], its text and [`Reason::ALL`] from one list.
macro_rules! reasons {
    ($($(#[$doc:meta])* $name:ident => $text:literal,)*) => {
        /// Why one input record failed: the value of the `sluice.error.reason` dead-letter
        /// header and of the `reason` label of `sluice_records_dead_lettered_total`.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Reason {
            $($(#[$doc])* $name,)*
            /// A reason defined by a sink for the records it refuses.
            Sink(SinkReason),
        }

        impl Reason {
            /// Every reason of the sandbox and the router (sinks list theirs:
            /// `sinks::reasons`).
            pub const ALL: &'static [Reason] = &[$(Reason::$name,)*];

            /// The reason as written in dead-letter headers and metrics.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Reason::$name => $text,)*
                    Reason::Sink(reason) => reason.0,
                }
            }
        }
    };
}

reasons! {
    /// The plugin returned an error for the record.
    PluginError => "plugin-error",
    /// The plugin trapped (panic, unreachable, stack overflow, `exit()`, malformed output…).
    Trap => "trap",
    /// The call ran past its wall-clock deadline (host calls included).
    Deadline => "limit:deadline",
    /// The plugin tried to grow its memory or tables past the cap, or to hold too many
    /// instances or host resources.
    Memory => "limit:memory",
    /// The call used up its fuel.
    Fuel => "limit:fuel",
    /// One input produced more output records or bytes than allowed.
    Output => "limit:output",
    /// The record was routed to an output the pipeline does not declare.
    UndeclaredOutput => "undeclared-output",
    /// A stateful plugin's write would bring its partition's state over `limits.max_state_bytes`
    /// or the tenant over its `max_state_bytes`.
    StateLimit => "limit:state",
    /// The record's timestamp is behind its partition's watermark (the largest timestamp seen
    /// minus `state.allowed_lateness_ms`) in a stateful pipeline.
    Late => "late",
}

/// A failure reason a sink defines, e.g. `row:rejected` or `sink:too-large`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SinkReason(pub &'static str);
