# git-deadline.sh runs git under coreutils timeout, which makes git's process group its own and, at the
# deadline (FBO_GIT_DEADLINE seconds) or on SIGTERM/SIGINT, signals the whole group — git, its ssh or https
# helper, a hook — and kills what is left two seconds later. The operator runs it through simple-git.
# The empty line first on stderr is for simple-git, which waits 50 ms more after a command that printed
# nothing (most local commands: checkout -q, add, commit -q): that wait was most of a commit's time.
printf '\n' >&2
exec timeout --kill-after=2 "${FBO_GIT_DEADLINE:-120}" git "$@"
