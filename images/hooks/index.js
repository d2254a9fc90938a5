// rarc-hooks shim: the runner (ACTIONS_RUNNER_CONTAINER_HOOKS=<dir>/index.js) runs this with its
// bundled node (node20 today; node24 works too) and this runs the native rarc-hooks binary.
// Built-in modules only. See docs/hooks.md for the layout.
//
// Binary: $RARC_HOOKS_BIN if set, else rarc-hooks-<arch> (x86_64, aarch64) and then rarc-hooks,
// looked up next to this file as the runner named it, then next to its real path (symlinks).
// Mode: the first argument if given, else $RARC_HOOKS_MODE, else the name of this file's
// directory (docker, k8s, k8s-novolume), as the runner named it.
// stdin, stdout and stderr are the binary's (inherited, not copied); SIGINT and SIGTERM are
// forwarded; the exit code is the binary's, or 128+signal if it was killed.
'use strict';

const { spawn } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');

const MODES = ['docker', 'k8s', 'k8s-novolume'];
const ARCHES = { x64: 'x86_64', arm64: 'aarch64' };

function fail(message) {
  process.stdout.write(`::error::rarc-hooks shim: ${message}\n`);
  process.exit(1);
}

function isExecutable(file) {
  try {
    fs.accessSync(file, fs.constants.X_OK);
    return fs.statSync(file).isFile();
  } catch (_) {
    return false;
  }
}

// As the runner named this file (not resolved through symlinks), then its real location.
const shimPath = path.resolve(process.argv[1] || __filename);
const dirs = [path.dirname(shimPath)];
if (!dirs.includes(__dirname)) dirs.push(__dirname);

function findBinary() {
  const override = process.env.RARC_HOOKS_BIN;
  if (override) {
    if (!isExecutable(override)) fail(`cannot start ${override}: not an executable file`);
    return override;
  }
  const arch = ARCHES[process.arch];
  const names = arch ? [`rarc-hooks-${arch}`, 'rarc-hooks'] : ['rarc-hooks'];
  const tried = [];
  for (const dir of dirs) {
    for (const name of names) {
      const file = path.join(dir, name);
      if (isExecutable(file)) return file;
      tried.push(file);
    }
  }
  fail(`no rarc-hooks binary for ${process.arch} (tried ${tried.join(', ')}); set RARC_HOOKS_BIN`);
  return undefined;
}

function findMode() {
  const arg = process.argv[2] || process.env.RARC_HOOKS_MODE;
  if (arg) return arg;
  const dir = path.basename(path.dirname(shimPath));
  if (MODES.includes(dir)) return dir;
  fail(
    `cannot tell the mode from the directory '${path.dirname(shimPath)}': put index.js in a ` +
      `directory named ${MODES.join(', ')} or set RARC_HOOKS_MODE`
  );
  return undefined;
}

const binary = findBinary();
const mode = findMode();
const child = spawn(binary, [mode], { stdio: 'inherit' });

let spawned = false;
child.on('spawn', () => {
  spawned = true;
});
child.on('error', (err) => {
  if (!spawned) fail(`cannot start ${binary}: ${err.message}`);
});

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    try {
      child.kill(signal);
    } catch (_) {
      // already gone
    }
  });
}

child.on('exit', (code, signal) => {
  if (code !== null) process.exit(code);
  const number = (signal && os.constants.signals[signal]) || 0;
  process.exit(number ? 128 + number : 1);
});
