# git-deadline.sh runs git under coreutils timeout, which makes git's process group its own and, at the
# deadline (FBO_GIT_DEADLINE seconds) or on SIGTERM/SIGINT, signals the whole group — git, its ssh or https
# helper, a hook — and kills what is left two seconds later. The operator runs it through simple-git.
exec timeout --kill-after=2 "${FBO_GIT_DEADLINE:-120}" git "$@"
