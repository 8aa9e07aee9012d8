'use strict';
// The two functions fengari's ldblib uses: debug.debug() has no terminal to prompt on in kubeloop.
module.exports = {
  setDefaultOptions() {},
  prompt() {
    throw new Error('kubeloop: no interactive Lua debugger (debug.debug) in the store');
  },
};
