import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

const ROOT = path.resolve(__dirname, '..', '..');

export interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs `npm run migrate -- <args>` as its own process (the CLI's source through ts-node, as the
 * worker runs in tests), with DATA_DIR and the given environment; DATABASE_URL is never passed on.
 */
export function runMigrate(args: string[], env: Record<string, string>, timeoutMs = 120_000): Promise<CliRun> {
  const { DATABASE_URL: _ignored, ...inherited } = process.env;
  const child = spawn(
    process.execPath,
    ['-r', 'ts-node/register/transpile-only', path.join(ROOT, 'src/entry-points/cli/migrate.ts'), ...args],
    {
      cwd: ROOT,
      env: {
        ...inherited,
        REDIS_URL: process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379',
        LOG_LEVEL: 'warn',
        ...env,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** What "untouched" means for the SQLite source: its bytes, its mtime, and which of its files exist. */
export function fileState(sqliteFile: string): { sha256: string; mtimeMs: number; files: string[] } {
  const dir = path.dirname(sqliteFile);
  return {
    sha256: crypto.createHash('sha256').update(fs.readFileSync(sqliteFile)).digest('hex'),
    mtimeMs: fs.statSync(sqliteFile).mtimeMs,
    files: fs
      .readdirSync(dir)
      .filter((f) => f.startsWith(path.basename(sqliteFile)))
      .sort(),
  };
}
