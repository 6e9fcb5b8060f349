//! Host calls that can block, bounded by the plugin call's deadline.
//!
//! Epoch interruption only fires while WebAssembly code runs. A guest that blocks inside a WASI
//! host function — `std::thread::sleep` (a monotonic-clock pollable and `pollable.block`), `poll`
//! on any pollable, or a stream's `blocking-*` method — would otherwise hold its worker for as
//! long as it asks. wasmtime-wasi's synchronous linker runs each of these as an `async` future
//! under `block_on`; [`bound_blocking_calls`] replaces every such function in the linker by one
//! that runs the same future under a timeout ending at the store's deadline, and traps with
//! [`HostCallDeadline`] (reported as `limit:deadline`) when it is reached.
//!
//! Every other WASI import returns without waiting (no file descriptors are reachable: there are
//! no preopens; sockets are denied before any I/O), so these are all the places a guest can wait.

use std::future::Future;
use std::time::Instant;

use wasmtime::component::{Linker, Resource};
use wasmtime::{Result, StoreContextMut};
use wasmtime_wasi::p2::bindings::io::poll as async_poll;
use wasmtime_wasi::p2::bindings::io::streams as async_streams;
use wasmtime_wasi::p2::bindings::sync::io::streams as sync_streams;
use wasmtime_wasi::p2::{DynInputStream, DynOutputStream, DynPollable, StreamResult};
use wasmtime_wasi::runtime::in_tokio;

use super::PluginState;

/// The `wasi:io` interfaces as wasmtime-wasi 48 defines them in its linker (guests importing any
/// 0.2.x version are linked to these).
const WASI_IO_POLL: &str = "wasi:io/poll@0.2.12";
const WASI_IO_STREAMS: &str = "wasi:io/streams@0.2.12";

/// A guest waited in a host call (sleep, poll, a blocking stream operation) until the call's
/// deadline.
#[derive(Debug, thiserror::Error)]
#[error(
    "the plugin waited in a host call (sleep, poll or a blocking stream operation) until its deadline"
)]
pub struct HostCallDeadline;

/// Runs `future` to completion, or until `deadline`.
fn until_deadline<F: Future>(deadline: Option<Instant>, future: F) -> Result<F::Output> {
    match deadline {
        None => Ok(in_tokio(future)),
        Some(at) => in_tokio(async move {
            tokio::time::timeout_at(tokio::time::Instant::from_std(at), future).await
        })
        .map_err(|_| HostCallDeadline.into()),
    }
}

/// A stream result as the guest receives it: `Ok`, a stream error, or a trap.
type GuestStreamResult<T> = Result<(Result<T, sync_streams::StreamError>,)>;

/// Converts a stream result the way wasmtime-wasi's own bindings do (a trap stays a trap).
fn stream_result<T>(
    state: &mut PluginState,
    result: Result<StreamResult<T>>,
) -> GuestStreamResult<T> {
    match result? {
        Ok(value) => Ok((Ok(value),)),
        Err(e) => Ok((Err(sync_streams::Host::convert_stream_error(
            &mut state.table,
            e,
        )?),)),
    }
}

/// Replaces every blocking `wasi:io` function of `linker` by one bounded by the store's deadline
/// (`PluginState::deadline`; none = unbounded, as before).
pub fn bound_blocking_calls(linker: &mut Linker<PluginState>) -> Result<()> {
    linker.allow_shadowing(true);
    let mut poll = linker.instance(WASI_IO_POLL)?;
    poll.func_wrap(
        "poll",
        |mut store: StoreContextMut<'_, PluginState>,
         (pollables,): (Vec<Resource<DynPollable>>,)| {
            let state = store.data_mut();
            let future = async_poll::Host::poll(&mut state.table, pollables);
            Ok((until_deadline(state.deadline, future)??,))
        },
    )?;
    poll.func_wrap(
        "[method]pollable.block",
        |mut store: StoreContextMut<'_, PluginState>, (pollable,): (Resource<DynPollable>,)| {
            let state = store.data_mut();
            let future = async_poll::HostPollable::block(&mut state.table, pollable);
            until_deadline(state.deadline, future)??;
            Ok(())
        },
    )?;

    let mut streams = linker.instance(WASI_IO_STREAMS)?;
    streams.func_wrap(
        "[method]input-stream.blocking-read",
        |mut store: StoreContextMut<'_, PluginState>,
         (stream, len): (Resource<DynInputStream>, u64)| {
            let state = store.data_mut();
            let future =
                async_streams::HostInputStream::blocking_read(&mut state.table, stream, len);
            let result = until_deadline(state.deadline, future);
            stream_result(state, result)
        },
    )?;
    streams.func_wrap(
        "[method]input-stream.blocking-skip",
        |mut store: StoreContextMut<'_, PluginState>,
         (stream, len): (Resource<DynInputStream>, u64)| {
            let state = store.data_mut();
            let future =
                async_streams::HostInputStream::blocking_skip(&mut state.table, stream, len);
            let result = until_deadline(state.deadline, future);
            stream_result(state, result)
        },
    )?;
    streams.func_wrap(
        "[method]output-stream.blocking-write-and-flush",
        |mut store: StoreContextMut<'_, PluginState>,
         (stream, bytes): (Resource<DynOutputStream>, Vec<u8>)| {
            let state = store.data_mut();
            let future = async_streams::HostOutputStream::blocking_write_and_flush(
                &mut state.table,
                stream,
                bytes,
            );
            let result = until_deadline(state.deadline, future);
            stream_result(state, result)
        },
    )?;
    streams.func_wrap(
        "[method]output-stream.blocking-write-zeroes-and-flush",
        |mut store: StoreContextMut<'_, PluginState>,
         (stream, len): (Resource<DynOutputStream>, u64)| {
            let state = store.data_mut();
            let future = async_streams::HostOutputStream::blocking_write_zeroes_and_flush(
                &mut state.table,
                stream,
                len,
            );
            let result = until_deadline(state.deadline, future);
            stream_result(state, result)
        },
    )?;
    streams.func_wrap(
        "[method]output-stream.blocking-flush",
        |mut store: StoreContextMut<'_, PluginState>, (stream,): (Resource<DynOutputStream>,)| {
            let state = store.data_mut();
            let future = async_streams::HostOutputStream::blocking_flush(&mut state.table, stream);
            let result = until_deadline(state.deadline, future);
            stream_result(state, result)
        },
    )?;
    streams.func_wrap(
        "[method]output-stream.blocking-splice",
        |mut store: StoreContextMut<'_, PluginState>,
         (dst, src, len): (Resource<DynOutputStream>, Resource<DynInputStream>, u64)| {
            let state = store.data_mut();
            let future =
                async_streams::HostOutputStream::blocking_splice(&mut state.table, dst, src, len);
            let result = until_deadline(state.deadline, future);
            stream_result(state, result)
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}
