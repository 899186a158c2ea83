# fish completion for bastion-stdio(1).
#
# A subcommand is the first argument, as in main.c.  To add one, add it
# to __bastion_stdio_commands with a description below, add its name to
# the __bastion_stdio_form conditions of the options it takes, and give
# its operands completions of their own under "__bastion_stdio_form NAME".

set -g __bastion_stdio_commands login logout doctor config-ssh
set -g __bastion_stdio_keywords ArmCacheTime ArmEndpoint AuthorityHost \
    Bastion CAFile \
    Cloud ConnectTimeout Credential DeviceCode FrameSize LogFile LogLevel \
    LoginClientId ManagedIdentityClientId ManagedIdentityObjectId \
    ManagedIdentityResourceId PingInterval StartTimeout StartVm \
    TargetResourceGroup \
    TargetResourceId TargetSubscription Tenant

# Whether the line is one of the forms named: a subcommand, or "main".
function __bastion_stdio_form
    set -l words (commandline -opc)
    set -l form main
    if set -q words[2]; and contains -- $words[2] $__bastion_stdio_commands
        set form $words[2]
    end
    contains -- $form $argv
end

# Sets __bastion_stdio_operands to the operands before the cursor (a
# subcommand is not one), skipping options and their arguments as
# getopt(3) does, and __bastion_stdio_conf to the -F argument.
function __bastion_stdio_scan
    set -l want
    set -l conf
    set -l operands
    set -l dashdash
    set -l words (commandline -opc)
    set -e words[1]
    if set -q words[1]; and contains -- $words[1] $__bastion_stdio_commands
        set -e words[1]
    end
    for w in $words
        if test -n "$want"
            test "$want" = F; and set conf $w
            set want
        else if test -n "$dashdash"; or not string match -qr '^-.' -- $w
            set -a operands $w
        else if test "$w" = --
            set dashdash 1
        else
            # a cluster such as -vq, -vF file or -Ffile
            set -l m (string match -r '^-[^Fo]*([Fo])(.*)$' -- $w)
            if test (count $m) -eq 3
                if test -z "$m[3]"
                    set want $m[2]
                else if test "$m[2]" = F
                    set conf $m[3]
                end
            end
        end
    end
    set -g __bastion_stdio_operands $operands
    set -g __bastion_stdio_conf $conf
end

# Whether a form with HOST and PORT (main, doctor) is at its operand
# number $argv[1] (0: HOST).
function __bastion_stdio_operand_is
    __bastion_stdio_form main doctor; or return 1
    __bastion_stdio_scan
    test (count $__bastion_stdio_operands) -eq $argv[1]
end

# Host names without wildcards from the bastion-stdio configuration files
# (or the -F file) and from ~/.ssh/config.
function __bastion_stdio_hosts
    __bastion_stdio_scan
    set -l conf $__bastion_stdio_conf
    set -l files
    if test "$conf" = none
    else if test -n "$conf"
        set files (string replace -r '^~/' "$HOME/" -- $conf)
    else
        if string match -q '/*' -- "$XDG_CONFIG_HOME"
            set files $XDG_CONFIG_HOME/bastion-stdio/config
        else
            set files $HOME/.config/bastion-stdio/config
        end
        set -a files /etc/bastion-stdio/config
    end
    set -a files $HOME/.ssh/config
    for f in $files
        test -f $f -a -r $f; and cat -- $f
    end | awk '
        { sub(/^[ \t]+/, "") }
        tolower($0) !~ /^host[ \t=]/ { next }
        {
            sub(/^[^ \t=]+[ \t]*=?[ \t]*/, "")
            gsub(/"/, "")
            for (i = 1; i <= NF; i++)
                if ($i !~ /[*?!]/)
                    print $i
        }' | sort -u
end

# The argument of -o: "Keyword=", then after it the keyword's values.
function __bastion_stdio_keyword
    set -l token (commandline -ct)
    set -l prefix (string match -r '^-o' -- $token)
    set token (string replace -r '^-o' '' -- $token)
    if not string match -q '*=*' -- $token
        printf '%s=\n' $__bastion_stdio_keywords |
            string replace -r -- '^' "$prefix"
        return
    end
    set -l key (string split -m1 = -- $token)[1]
    set -l value (string split -m1 = -- $token)[2]
    switch (string lower -- $key)
        case cloud
            printf '%s\n' AzureCloud AzureUSGovernment AzureChinaCloud
        case loglevel
            printf '%s\n' QUIET FATAL ERROR INFO VERBOSE DEBUG1 DEBUG2 DEBUG3
        case credential
            printf '%s\n' environment workload-identity managed-identity \
                login azure-cli device-code
        case devicecode startvm
            printf '%s\n' yes no
        case cafile logfile
            __fish_complete_path $value
    end | string replace -r -- '^' "$prefix$key="
end

complete -c bastion-stdio -f
complete -c bastion-stdio -n '__bastion_stdio_form main login doctor config-ssh' \
    -s F -r -F -a none -d 'Configuration file ("none": none)'
complete -c bastion-stdio -n '__bastion_stdio_form main login doctor config-ssh' \
    -s o -x -a '(__bastion_stdio_keyword)' -d 'Set a keyword'
complete -c bastion-stdio -n '__bastion_stdio_form main login doctor config-ssh' \
    -s q -d 'Write no diagnostics'
complete -c bastion-stdio -n '__bastion_stdio_form main login doctor config-ssh' \
    -s v -d 'Show each step (up to -vvv)'
complete -c bastion-stdio -n '__bastion_stdio_form main' -s V \
    -d 'Print the versions and exit'
complete -c bastion-stdio -n 'test (count (commandline -opc)) -eq 1' \
    -a login -d 'Sign in with the device-code flow and keep the sign-in'
complete -c bastion-stdio -n 'test (count (commandline -opc)) -eq 1' \
    -a logout -d 'Remove the sign-in and every cached token'
complete -c bastion-stdio -n 'test (count (commandline -opc)) -eq 1' \
    -a doctor -d 'Check each step of a connection without a tunnel'
complete -c bastion-stdio -n 'test (count (commandline -opc)) -eq 1' \
    -a config-ssh -d 'Print ssh_config blocks for the reachable VMs'
complete -c bastion-stdio -n '__bastion_stdio_operand_is 0' \
    -a '(__bastion_stdio_hosts)' -d Host
complete -c bastion-stdio -n '__bastion_stdio_operand_is 1' -a 22 -d Port
