//! Every call runs in a task of its own, so a caller that goes away mid-call cancels nothing:
//! hyper drops a request's future when its connection closes, and a CompleteLink dropped
//! between the token exchange and the write would lose a link whose flow is already spent —
//! its retry could only answer FLOW_NOT_FOUND. Detached, the call finishes, its idempotent
//! answer is recorded, and the retry (same `request_id`, new connection) gets it. A detached
//! call still ends at the request timeout, so callers that hang up cannot pile up work.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use super::status::{ApiError, Locale, to_status};
use crate::linking::LinkingError;

/// Runs each call in a task of its own, for at most `timeout`.
#[derive(Clone, Copy)]
pub struct DetachedLayer {
    pub timeout: Duration,
}

impl<S> tower::Layer<S> for DetachedLayer {
    type Service = Detached<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Detached { inner, timeout: self.timeout }
    }
}

#[derive(Clone)]
pub struct Detached<S> {
    inner: S,
    timeout: Duration,
}

impl<S, B> tower::Service<http::Request<B>> for Detached<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let locale = Locale::from_accept_language(req.headers().get("accept-language").and_then(|v| v.to_str().ok()));
        // The call starts now, whether or not anyone polls the answer.
        let task = tokio::spawn(tokio::time::timeout(self.timeout, self.inner.call(req)));
        Box::pin(async move {
            match task.await {
                Ok(Ok(answer)) => answer,
                Ok(Err(_elapsed)) => Ok(to_status(&ApiError::TimedOut, locale).into_http()),
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                // Only the runtime shutting down cancels a task.
                Err(_) => Ok(to_status(&ApiError::Linking(LinkingError::ShuttingDown), locale).into_http()),
            }
        })
    }
}
