//! Waiting, always with a time limit.

use std::{fmt::Debug, future::Future, time::Duration};

use kube::{Api, Resource, runtime::wait::Condition};
use serde::de::DeserializeOwned;

use crate::Error;

/// Waits until the object `name` of `api` satisfies `condition`, for at most `timeout`.
///
/// Wraps [`kube::runtime::wait::await_condition`]: the condition sees `None` while the object
/// does not exist, and the result is the object at the moment it matched (`None` when the match
/// was on absence, as with [`conditions::is_deleted`](kube::runtime::wait::conditions::is_deleted)).
/// A closure `|obj: Option<&K>| -> bool` is a condition. The timeout error names the object's URL.
pub async fn await_condition<K>(
    api: &Api<K>,
    name: &str,
    condition: impl Condition<K>,
    timeout: Duration,
) -> Result<Option<K>, Error>
where
    K: Clone + Debug + Send + DeserializeOwned + Resource + 'static,
{
    let what = || format!("{}/{name} to satisfy its condition", api.resource_url());
    let wait = kube::runtime::wait::await_condition(api.clone(), name, condition);
    match tokio::time::timeout(timeout, wait).await {
        Ok(Ok(object)) => Ok(object),
        Ok(Err(source)) => Err(Error::Watch { what: what(), source }),
        Err(_) => Err(Error::Timeout { what: what(), timeout }),
    }
}

/// Runs `future` for at most `timeout`; `what` names it in the error.
///
/// ```no_run
/// # async fn doc() -> Result<(), rarc_kube_test::Error> {
/// use std::time::Duration;
/// let answer = rarc_kube_test::within(Duration::from_secs(1), "the answer", async { 42 }).await?;
/// # Ok(()) }
/// ```
pub async fn within<T>(timeout: Duration, what: &str, future: impl Future<Output = T>) -> Result<T, Error> {
    tokio::time::timeout(timeout, future).await.map_err(|_| Error::Timeout {
        what: what.to_owned(),
        timeout,
    })
}
