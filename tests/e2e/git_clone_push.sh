# git clone and git push over ssh against a bare repository on the VM.

export GIT_SSH_COMMAND="ssh -F $W/ssh_config"
export GIT_AUTHOR_NAME=t GIT_AUTHOR_EMAIL=t@example.invalid
export GIT_COMMITTER_NAME=t GIT_COMMITTER_EMAIL=t@example.invalid
git init -q --bare -b main "$T/remote.git"
git init -q -b main "$T/seed"
(cd "$T/seed" && head -c 200000 /dev/urandom >blob &&
    git add blob && git commit -qm seed &&
    git push -q "$T/remote.git" HEAD:refs/heads/main) || fail "seeding"

git clone -q "vm1:$T/remote.git" "$T/work" 2>"$T/err"
expect_eq $? 0 "git clone status"
cmp -s "$T/seed/blob" "$T/work/blob" || fail "cloned blob differs"
(cd "$T/work" && echo second >file && git add file &&
    git commit -qm second && git push -q origin HEAD:main) 2>>"$T/err"
expect_eq $? 0 "git push status"
expect_eq "$(git --git-dir="$T/remote.git" log -1 --format=%s main)" second \
    "pushed commit"
expect_eq "$(git --git-dir="$T/remote.git" show main:file)" second \
    "pushed content"
expect_empty "$T/err" "git stderr"
expect_no_sessions
