//! Middleware without boxing: a [`Gate`] decides from a request's head whether it goes on,
//! and sees its answer on the way out.
//!
//! axum's `from_fn` boxes its own future and, through `Next`, the rest of the stack's: every
//! request pays an allocation and a move of the nested futures per layer. With four such layers
//! (browser guard, error shape, auth, metrics) that was a fifth of a small GET's throughput
//! (BENCHMARKS.md B4). A gated service's future is the inner one, unboxed, beside what the gate
//! remembered from the request; only an answer the gate must rewrite asynchronously (reading
//! a framework error's body) is boxed.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::response::Response;
use futures::future::BoxFuture;
use pin_project_lite::pin_project;
use tower::{Layer, Service};

/// One middleware's decisions.
pub(crate) trait Gate: Clone + Send + Sync + 'static {
    /// What the gate keeps from the request for its answer.
    type Memo: Send + 'static;

    /// Look at the request's head: the memo, and an answer when the request goes no further.
    fn admit(&self, req: &Request) -> (Self::Memo, Option<Response>);

    /// The answer on its way out (also a refusal of [`Gate::admit`]'s).
    fn answer(memo: Self::Memo, resp: Response) -> Answer;
}

/// A gate's answer: ready, or still to be made.
pub(crate) enum Answer {
    Now(Response),
    Later(BoxFuture<'static, Response>),
}

/// The layer putting `G` in front of a service.
#[derive(Clone)]
pub(crate) struct GateLayer<G>(pub G);

impl<S, G: Gate> Layer<S> for GateLayer<G> {
    type Service = Gated<G, S>;

    fn layer(&self, inner: S) -> Self::Service {
        Gated {
            gate: self.0.clone(),
            inner,
        }
    }
}

/// A service behind a gate.
#[derive(Clone)]
pub(crate) struct Gated<G, S> {
    gate: G,
    inner: S,
}

impl<G, S> Service<Request> for Gated<G, S>
where
    G: Gate,
    S: Service<Request, Response = Response, Error = Infallible> + Clone,
{
    type Response = Response;
    type Error = Infallible;
    type Future = GateFuture<G, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let (memo, refused) = self.gate.admit(&req);
        let stage = match refused {
            Some(resp) => Stage::Refused { resp: Some(resp) },
            None => {
                // The clone takes the place of the service made ready by `poll_ready`.
                let ready = self.inner.clone();
                let mut ready = std::mem::replace(&mut self.inner, ready);
                Stage::Inner {
                    fut: ready.call(req),
                }
            }
        };
        GateFuture {
            memo: Some(memo),
            stage,
        }
    }
}

pin_project! {
    /// The inner service's future, then the gate's answer.
    pub(crate) struct GateFuture<G: Gate, F> {
        memo: Option<G::Memo>,
        #[pin]
        stage: Stage<F>,
    }
}

pin_project! {
    #[project = StageProj]
    enum Stage<F> {
        Inner { #[pin] fut: F },
        Refused { resp: Option<Response> },
        Later { fut: BoxFuture<'static, Response> },
    }
}

impl<G, F> Future for GateFuture<G, F>
where
    G: Gate,
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.as_mut().project();
        let resp = match this.stage.project() {
            StageProj::Inner { fut } => match fut.poll(cx) {
                Poll::Ready(Ok(resp)) => resp,
                Poll::Ready(Err(never)) => match never {},
                Poll::Pending => return Poll::Pending,
            },
            StageProj::Refused { resp } => resp.take().expect("a gate future polled after its end"),
            StageProj::Later { fut } => return fut.as_mut().poll(cx).map(Ok),
        };
        let memo = this
            .memo
            .take()
            .expect("a gate future polled after its end");
        match G::answer(memo, resp) {
            Answer::Now(resp) => Poll::Ready(Ok(resp)),
            Answer::Later(mut fut) => {
                let polled = fut.as_mut().poll(cx);
                self.project().stage.set(Stage::Later { fut });
                polled.map(Ok)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::body::Body;
    use axum::http::StatusCode;
    use axum::routing::get;
    use tower::ServiceExt;

    /// Refuses `/no`, and adds a header naming the path to every answer (later for `/later`).
    #[derive(Clone)]
    struct Mark;

    impl Gate for Mark {
        type Memo = String;

        fn admit(&self, req: &Request) -> (String, Option<Response>) {
            let path = req.uri().path().to_string();
            let refused = (path == "/no").then(|| {
                let mut r = Response::new(Body::from("refused"));
                *r.status_mut() = StatusCode::FORBIDDEN;
                r
            });
            (path, refused)
        }

        fn answer(path: String, mut resp: Response) -> Answer {
            let later = path == "/later";
            resp.headers_mut()
                .insert("x-path", path.parse().expect("a path is a header value"));
            if later {
                Answer::Later(Box::pin(async move {
                    tokio::task::yield_now().await;
                    resp
                }))
            } else {
                Answer::Now(resp)
            }
        }
    }

    async fn ask(app: Router, path: &str) -> (StatusCode, String, String) {
        let req = Request::builder().uri(path).body(Body::empty()).unwrap();
        let resp = app.oneshot(req).await.unwrap();
        let mark = resp.headers()["x-path"].to_str().unwrap().to_string();
        let status = resp.status();
        let body = axum::body::to_bytes(resp.into_body(), 1024).await.unwrap();
        (status, mark, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn a_gate_refuses_passes_and_sees_every_answer() {
        let app = Router::new()
            .route("/yes", get(|| async { "handled" }))
            .route("/no", get(|| async { "handled" }))
            .route("/later", get(|| async { "handled" }))
            .layer(GateLayer(Mark));
        assert_eq!(
            ask(app.clone(), "/yes").await,
            (StatusCode::OK, "/yes".into(), "handled".into())
        );
        assert_eq!(
            ask(app.clone(), "/no").await,
            (StatusCode::FORBIDDEN, "/no".into(), "refused".into())
        );
        assert_eq!(
            ask(app.clone(), "/later").await,
            (StatusCode::OK, "/later".into(), "handled".into())
        );
        // The fallback is behind the gate too.
        assert_eq!(ask(app, "/nothing").await.0, StatusCode::NOT_FOUND);
    }
}
