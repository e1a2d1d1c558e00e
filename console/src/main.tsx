import { render } from 'preact';
import { useErrorBoundary } from 'preact/hooks';
import { App } from './app';
import './style.css';

/** A fault in the page itself shows what to do instead of leaving an empty page. */
function Guarded() {
  const [error, reset] = useErrorBoundary();
  if (error) {
    return (
      <main class="login">
        <div class="card" role="alert">
          <h1>The console stopped on an error</h1>
          <p class="notice error">{String((error as Error)?.message ?? error)}</p>
          <p>
            Your classifiers are safe on the server. Reload the page to go on; if this comes back, report the message
            above.
          </p>
          <button class="primary" onClick={() => window.location.reload()}>
            Reload
          </button>{' '}
          <button onClick={reset}>Try to continue</button>
        </div>
      </main>
    );
  }
  return <App />;
}

render(<Guarded />, document.getElementById('app')!);
